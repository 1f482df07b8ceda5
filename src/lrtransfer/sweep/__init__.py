"""LR-transfer sweeps (docs/study.md): a spec → a plan of runs → an executor → the run store.

* `SweepSpec`, `load_spec` — the sweep spec (base config, widths, LR grid, rules, arms, seeds);
* `run_sweep` — run or resume it with the two-phase protocol of Appendix G.2, locally or on Ray;
* `results`, `alignment` — the sweep folder's plan joined with the store, as DataFrames.
"""

from lrtransfer.sweep.plan import PlannedRun, read_plan
from lrtransfer.sweep.runner import SweepReport, run_sweep
from lrtransfer.sweep.spec import SpecError, SweepSpec, load_spec
from lrtransfer.sweep.tables import alignment, results

__all__ = ["PlannedRun", "SpecError", "SweepReport", "SweepSpec", "alignment", "load_spec", "read_plan", "results",
           "run_sweep"]
