"""lrtransfer: learning-rate transfer across widths, and why it works (Kosson et al. 2025).

The public API in one place:

* `param_groups`, `parameter_roles`, `describe_groups` — width-aware LR and weight-decay rules (Eq 6-8)
  for any torch optimizer, and the table of groups;
* `AlignmentMonitor` — per-layer alignment diagnostics during training (Eq 2, 4);
* `coord_check` — a coord check of a model builder across widths: activations, updates, √m (Eq 5), timescales;
* `schedules` — LR multipliers, incl. the extra warmups of Eq 14-15;
* `theory` — the analytic models of Appendices B, E, F (Eq 13, 27-39);
* `train`, `RunConfig`, `resolve`, `store` — resumable single runs and the SQLite run store;
* `run_sweep`, `results`, `best_lrs`, `verdicts` — LR-transfer sweeps and their analysis;
* `Study`, `Trial` — the same study of the user's own model and training loop (an objective function);
* `command_trial`, `report_loss` — the same study of a script under any launcher (``base.command``).
"""

from lrtransfer import schedules, theory
from lrtransfer.analysis import best_lrs, verdicts
from lrtransfer.config import RunConfig, resolve
from lrtransfer.coord import coord_check
from lrtransfer.monitor import AlignmentMonitor
from lrtransfer.objectives.script import CommandTrial, command_trial, report_loss
from lrtransfer.objectives.trial import Trial, TrialDiverged
from lrtransfer.records import store
from lrtransfer.scaling import (
    ParamInfo,
    describe_groups,
    param_groups,
    parameter_roles,
    role_hyperparams,
    split_groups,
)
from lrtransfer.study import Study
from lrtransfer.sweep import results, run_sweep
from lrtransfer.training import train

__version__ = "0.1.0"

__all__ = [
    "AlignmentMonitor",
    "CommandTrial",
    "ParamInfo",
    "RunConfig",
    "Study",
    "Trial",
    "TrialDiverged",
    "best_lrs",
    "command_trial",
    "coord_check",
    "describe_groups",
    "param_groups",
    "parameter_roles",
    "report_loss",
    "resolve",
    "results",
    "role_hyperparams",
    "run_sweep",
    "schedules",
    "split_groups",
    "store",
    "theory",
    "train",
    "verdicts",
]
