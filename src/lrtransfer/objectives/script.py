"""The contract between a command objective and the script it launches: ``LRTRANSFER_*`` variables
in, a losses file out (the study's side: `lrtransfer.objectives.command`).

Inside the script, under any launcher::

    trial = lrtransfer.command_trial()            # the study's values; None when run by hand
    rules = trial.rules if trial else {"lr": args.lr, "weight_decay": args.wd}
    opt = torch.optim.AdamW(lrtransfer.param_groups(model, base, **rules))
    for step in range(steps):
        ...
        lrtransfer.report_loss(step, loss.item())  # rank 0 appends a line; elsewhere a no-op

Each value of `VALUES` is the variable ``LRTRANSFER_<NAME>`` (``LRTRANSFER_LR``,
``LRTRANSFER_WD_SCALING``, …; ``no_decay`` comma-separated, ``steps`` empty when unknown), and the
spec's params are JSON in ``LRTRANSFER_PARAMS``. The same names fill the command's ``{lr}``, ``{width}``, ….
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrtransfer.records import jsonl

PREFIX = "LRTRANSFER_"
# The trial's values, as template fields and environment variables: one list for both.
VALUES = ("width", "base_width", "width_mult", "lr", "fixed_lr", "weight_decay", "lr_scaling", "wd_scaling",
          "no_decay", "seed", "steps", "phase", "arm", "folder", "losses")
PARAMS = PREFIX + "PARAMS"
LOSSES = PREFIX + "LOSSES"


def env_name(value: str) -> str:
    """``lr_scaling`` → ``LRTRANSFER_LR_SCALING``."""
    return PREFIX + value.upper()


def as_text(value: Any) -> str:
    """A value as the command and the environment show it: ``None`` empty, a sequence comma-joined."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def trial_env(values: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, str]:
    """The variables a launched command gets: every value of `VALUES` and the params as JSON."""
    return {**{env_name(k): as_text(values[k]) for k in VALUES}, PARAMS: json.dumps(dict(params))}


@dataclass(frozen=True)
class CommandTrial:
    """The trial a study launched this script for (the `lrtransfer.Trial` attributes a command needs)."""

    width: int
    base_width: int
    width_mult: float
    seed: int
    steps: int | None
    phase: str
    arm: str
    folder: Path  # the run folder (the command's working directory)
    params: dict[str, Any]
    rules: dict[str, Any]  # `lrtransfer.param_groups` keywords: lr, weight_decay, lr/wd_scaling, fixed_lr, no_decay


def command_trial(environ: Mapping[str, str] | None = None) -> CommandTrial | None:
    """The study's values from ``LRTRANSFER_*`` (`trial_env`); None outside a study."""
    env = os.environ if environ is None else environ
    if LOSSES not in env:
        return None
    value = {name: env[env_name(name)] for name in VALUES}
    rules = {"lr": float(value["lr"]), "weight_decay": float(value["weight_decay"]),
             "lr_scaling": value["lr_scaling"], "wd_scaling": value["wd_scaling"],
             "fixed_lr": float(value["fixed_lr"]), "no_decay": tuple(filter(None, value["no_decay"].split(",")))}
    return CommandTrial(width=int(value["width"]), base_width=int(value["base_width"]),
                        width_mult=float(value["width_mult"]), seed=int(value["seed"]),
                        steps=int(value["steps"]) if value["steps"] else None, phase=value["phase"],
                        arm=value["arm"], folder=Path(value["folder"]), params=json.loads(env.get(PARAMS, "{}")),
                        rules=rules)


def report_loss(step: int, loss: float, **metrics: float) -> None:
    """Report the train loss of ``step`` (and ``val_loss=…`` or other metrics) to the study: one
    JSON line appended to ``LRTRANSFER_LOSSES``. Only rank 0 writes (``RANK`` unset or 0); outside
    a study it does nothing, so the script runs by hand unchanged."""
    path = os.environ.get(LOSSES)
    if not path or os.environ.get("RANK", "0") != "0":
        return
    row = {"step": int(step), "loss": float(loss), **{k: float(v) for k, v in metrics.items()}}
    jsonl.append(Path(path), [row])
