"""A study of the user's own model and training loop: an objective function receives a `Trial`.

```python
def objective(trial: lrtransfer.Trial) -> None:
    model, base = build(trial.width), build(trial.base_width)
    opt = torch.optim.AdamW(trial.param_groups(model, base), betas=(0.9, 0.95))
    monitor = trial.monitor(model)
    for step in range(steps):
        with monitor.step(step):
            loss = ...; loss.backward(); opt.step(); opt.zero_grad()
        trial.log(step, loss.item())
```

The study plans trials like built-in runs (two phases, widths, rules, seeds) and `run_trial` runs
one: it seeds torch, numpy and `random` from ``trial.seed``, calls the objective, and records the
trial with the same `record.record_run` as the built-in trainer. A logged NaN/inf or a loss above
``run.max_loss`` stops the trial as ``diverged`` (`log` raises `TrialDiverged`, which the study
catches); any other exception ends it as ``failed`` with its message, and the sweep goes on.
"""

from __future__ import annotations

import math
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lrtransfer.config import ObjectiveConfig, TrialConfig, dump_yaml
from lrtransfer.monitor import AlignmentMonitor, NullMonitor
from lrtransfer.objectives.load import ObjectiveError, load_objective
from lrtransfer.phases import Phase
from lrtransfer.records import atomic, checkpoint, jsonl
from lrtransfer.records.record import ALIGNMENT, CONFIG, METRICS, RunRecords, reconcile, record_run
from lrtransfer.records.runlog import MetricLog
from lrtransfer.records.store import DIVERGED, DONE, FAILED, SKIPPED, RunStore
from lrtransfer.scaling import param_groups
from lrtransfer.training.loop import run as train_run

STATE = "trial_state.pt"
STUDY_KEYS = ("status", "steps", "final_train_loss", "wall_s", "folder", "diverged_at", "error",
              SKIPPED)  # summary values only the study sets (width and width_mult: the study's win)
NO_LOSS = "no loss logged: the objective ended without calling trial.log(step, loss)"


class TrialDiverged(Exception):
    """Raised by `Trial.log` when a loss is NaN/inf or above the bound; the study records `diverged`."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"step {step}: loss {loss} is not finite or above run.max_loss")
        self.step, self.loss = step, loss


class Trial:
    """One planned run of a user's objective: its widths, LR and weight-decay rule, seed, folder.

    Attributes: ``width``, ``base_width``, ``width_mult`` (m), ``lr`` (base LR of the hidden and
    output layers, before width scaling), ``fixed_lr`` (LR of input, gain and bias parameters),
    ``weight_decay`` (base λ), ``lr_scaling``, ``wd_scaling``, ``seed``, ``phase`` and ``arm``
    (where the plan first put this run; runs shared by several arms carry the first), ``folder``
    (the run folder, for the objective's own files), ``params`` (the spec's free parameters) and
    ``steps`` (``run.steps`` if the spec gives it).
    """

    def __init__(self, config: ObjectiveConfig, folder: str | Path, *, phase: Phase | None = None,
                 arm: str | None = None) -> None:
        self.config, self.folder = config, Path(folder)
        self.phase, self.arm = phase, arm
        oc, mc = config.optim, config.model
        self.width, self.base_width, self.width_mult = mc.width, mc.base_width, mc.width_mult
        self.lr, self.fixed_lr, self.weight_decay = oc.lr, oc.fixed_lr or oc.lr, oc.weight_decay
        self.lr_scaling, self.wd_scaling = oc.lr_scaling, oc.wd_scaling
        self.seed, self.steps, self.params = config.run.seed, config.run.steps, dict(config.params)
        self.folder.mkdir(parents=True, exist_ok=True)
        # What an earlier, killed attempt logged: kept only up to its last `save`, if `load` is called.
        self._previous = {name: jsonl.read(self.folder / name) for name in (METRICS, ALIGNMENT)}
        for name in (METRICS, ALIGNMENT):
            (self.folder / name).unlink(missing_ok=True)
        self._log = MetricLog(self.folder / METRICS)
        self._monitors: list[AlignmentMonitor] = []
        self._kept_alignment: list[dict] = []
        self._val: float | None = None
        self._extra: dict[str, Any] = {}
        self._roles: dict[str, str] = {}

    def param_groups(self, model: nn.Module, base_model: nn.Module, **kw: Any) -> list[dict[str, Any]]:
        """`lrtransfer.param_groups` with this trial's LR, weight decay and rules (Eq 6-8).

        At the base width (m = 1) model and base have the same shapes, so roles come from the
        documented positional inference unless ``delta_model`` (the model at another width, e.g.
        on the meta device) is passed; any other keyword goes to `param_groups`.
        """
        rules = {**self.config.optim.rules(), **kw}
        if self.width_mult == 1 and "delta_model" not in kw:
            groups = param_groups(model, width_mult=1.0, **rules)
        else:
            groups = param_groups(model, base_model, **rules)
        self._roles.update({name: g["role"] for g in groups for name in g["param_names"]})
        return groups

    def monitor(self, model: nn.Module, **kw: Any) -> AlignmentMonitor | NullMonitor:
        """An `AlignmentMonitor` whose records stream into the run folder (``monitor.*`` of the
        spec set ``every`` and ``sample``; keywords override them). Records carry the roles of
        the trial's `param_groups`, when called before."""
        mc = self.config.monitor
        if not mc.enabled:
            return NullMonitor()
        opts = {"every": mc.every, "sample": mc.sample, "layers": mc.layers, "roles": self._roles, **kw}
        monitor = AlignmentMonitor(model, path=self.folder / ALIGNMENT, **opts)
        self._monitors.append(monitor)
        return monitor

    def log(self, step: int, loss: float, **metrics: float) -> None:
        """Record the train loss of ``step`` (0-based) and any other metrics (``val_loss=…``);
        raises `TrialDiverged` when the loss is NaN/inf or above ``run.max_loss``."""
        loss = _number(loss, "trial.log: loss")
        values = {k: _number(v, f"trial.log: {k}") for k, v in metrics.items()}
        self._log.write({"step": int(step), "train_loss": loss, **values})
        if "val_loss" in values:
            self._val = values["val_loss"]
        if not math.isfinite(loss) or loss > self.config.run.max_loss:
            raise TrialDiverged(int(step), loss)

    def finish(self, val_loss: float | None = None, **summary: Any) -> None:
        """Record the final validation loss and any other values for the trial's summary: numbers,
        strings, booleans, None, or lists and dicts of them. The study's own values (`STUDY_KEYS`:
        status, loss, steps, ...) cannot be set here; a bad value raises, failing the trial."""
        if taken := [k for k in summary if k in STUDY_KEYS]:
            raise ValueError(f"trial.finish: {taken[0]!r} is a summary value the study sets itself; name yours "
                             f"otherwise (the study's: {', '.join(STUDY_KEYS)})")
        for key, value in summary.items():
            _check_data(value, f"trial.finish: {key}")
        if val_loss is not None:
            self._val = _number(val_loss, "trial.finish: val_loss")
        self._extra.update(summary)

    def save(self, state: dict[str, Any]) -> None:
        """Save the objective's own checkpoint (tensors, numbers, strings, containers of them);
        `load` in a resumed trial returns it and drops what was logged after it."""
        saved = {"state": state, "step": len(self._log.rows), "logged": len(self._log.rows),
                 "recorded": self._recorded()}
        checkpoint.save_state(self.folder, saved, name=STATE)

    def load(self) -> dict[str, Any] | None:
        """The state of the last `save` of this trial (loaded with ``weights_only=True``), or None."""
        saved = checkpoint.load(self.folder, name=STATE, keys=("state", "logged", "recorded"))
        if saved is None:
            return None
        for row in self._previous[METRICS][: saved["logged"]]:
            self._log.write(row)
        self._kept_alignment = self._previous[ALIGNMENT][: saved["recorded"]]
        jsonl.append(self.folder / ALIGNMENT, self._kept_alignment)
        return saved["state"]

    def records(self, status: str, wall_s: float, **extra: Any) -> RunRecords:
        """What the study records for this trial when it ended with ``status``; a trial that ended
        without logging a loss is ``failed``."""
        rows = self._log.rows
        losses = [r["train_loss"] for r in rows if "train_loss" in r]
        if status == DONE and not losses:
            status, extra = FAILED, {**extra, "error": NO_LOSS}
        window = losses[-self.config.run.final_window:]
        summary = {
            **self._extra,
            "status": status, "steps": len(losses),
            "final_train_loss": sum(window) / len(window) if window and status == DONE else math.nan,
            "val_loss": self._val if self._val is not None and status == DONE else math.nan,
            "wall_s": wall_s, "width": self.width, "width_mult": self.width_mult, "folder": str(self.folder),
            **extra,
        }
        return RunRecords(summary, list(rows), self._kept_alignment + [r for m in self._monitors for r in m.records])

    def _recorded(self) -> int:
        return len(self._kept_alignment) + sum(len(m.records) for m in self._monitors)

    def close(self) -> None:
        self._log.close()


def run_trial(config: ObjectiveConfig, folder: str | Path, *, store: RunStore | None = None,
              sweep: str | None = None, phase: Phase | None = None, arm: str | None = None) -> RunRecords:
    """Run one trial of ``config.objective`` into ``folder`` and record it (skipped if finished)."""
    folder = Path(folder).absolute()  # where it is now, whatever directory the objective changes to
    finished = reconcile(folder, store, config.to_dict(), sweep)
    if finished is not None:
        return RunRecords({**finished, SKIPPED: "already finished"})
    try:
        objective = load_objective(config.objective)
    except ObjectiveError as err:
        raise ObjectiveError(f"objective: {err}") from None
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_text(folder / CONFIG, dump_yaml(config))
    run_id = None if store is None else store.start_run(config.to_dict(), sweep=sweep, force=True)
    trial = Trial(config, folder, phase=phase, arm=arm)
    seed_everything(config.run.seed)
    t0 = time.perf_counter()
    try:
        objective(trial)
        status, extra = DONE, {}
    except TrialDiverged as err:
        status, extra = DIVERGED, {"diverged_at": err.step}
    except Exception as err:  # the user's code failed: record it, the sweep goes on
        status, extra = FAILED, {"error": f"{type(err).__name__}: {err}"}
    except (SystemExit, KeyboardInterrupt) as err:
        if not _own_exit(err):
            raise  # Ctrl-C of this process: stop; the row stays running and the trial resumes later
        status, extra = FAILED, {"error": f"{type(err).__name__}: {err}".rstrip(": ")}
    finally:
        trial.close()
    records = trial.records(status, time.perf_counter() - t0, **extra)
    record_run(folder, store, run_id, records)
    return records


def run_planned(config: TrialConfig, folder: str | Path, *, store: RunStore | None = None, sweep: str | None = None,
                phase: Phase | None = None, arm: str | None = None) -> RunRecords:
    """Train one planned run of a sweep — the one entry point of every executor: a user
    objective's trial for an `ObjectiveConfig`, the built-in trainer for a `RunConfig`."""
    if isinstance(config, ObjectiveConfig):
        return run_trial(config, folder, store=store, sweep=sweep, phase=phase, arm=arm)
    return train_run(config, folder, store=store, sweep=sweep, progress=False)


def _check_data(value: Any, where: str) -> None:
    """A summary value must be JSON data: a number, string, bool, None, or a list/dict of them."""
    try:
        jsonl.jsonable(value, where)
    except TypeError as err:
        raise TypeError(f"{err}: give numbers, strings, booleans, or lists and dicts of them (value.item(), "
                        "value.tolist())") from None


def _number(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: expected a number, got {value!r}") from None


def _own_exit(err: BaseException) -> bool:
    """Whether the objective raised `err` itself: any `SystemExit`, and a `KeyboardInterrupt` where
    SIGINT is ignored (a sweep worker), since there it cannot come from a Ctrl-C."""
    return isinstance(err, SystemExit) or signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's `random` (the trial's ``seed``)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

