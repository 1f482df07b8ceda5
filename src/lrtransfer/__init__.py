"""lrtransfer: learning-rate transfer across widths, and why it works (Kosson et al. 2025).

The public API in one place:

* `param_groups`, `parameter_roles`, `describe_groups` — width-aware LR and weight-decay rules (Eq 6-8)
  for any torch optimizer, and the table of groups;
* `AlignmentMonitor` — per-layer alignment diagnostics during training (Eq 2, 4);
* `schedules` — LR multipliers, incl. the extra warmups of Eq 14-15;
* `theory` — the analytic models of Appendices B, E, F (Eq 13, 27-39);
* `train`, `RunConfig`, `store` — resumable single runs and the SQLite run store.
"""

from lrtransfer import schedules, store, theory
from lrtransfer.config import RunConfig
from lrtransfer.monitor import AlignmentMonitor
from lrtransfer.scaling import ParamInfo, describe_groups, param_groups, parameter_roles, split_groups
from lrtransfer.training import train

__version__ = "0.1.0"

__all__ = [
    "AlignmentMonitor",
    "ParamInfo",
    "RunConfig",
    "describe_groups",
    "param_groups",
    "parameter_roles",
    "schedules",
    "split_groups",
    "store",
    "theory",
    "train",
]
