"""The user's own training code as a study objective.

* `load` — name, import and check an objective ('package.module:function'); light, so the sweep
  spec and the study can check one without importing the training code.
* `trial` — `Trial`, what an objective receives, and `run_trial` / `run_planned`, which run one
  planned trial (or built-in run) and record it.
* `command` — the built-in objective that runs a command (any launcher: ``torchrun …``) per trial.
* `script` — the script side of a command objective: `command_trial()` and `report_loss()`.
"""
