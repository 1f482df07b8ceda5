"""Run a sweep: its stages (`sweep.stages`) train their rounds here, on an executor, into one folder.

Stages: phase 1 (two-phase protocol only) → phase 2 → refine → dynamics (optional). The sweep folder holds
`sweep.yaml` (the resolved spec), `plan.csv` (every row planned so far), `runs.db` (the store) and
`runs/<config_hash>/` (one folder per distinct run). Everything is keyed by config hash, so a
re-run trains only what is missing: a killed sweep loses at most its runs in flight, and a local
run in flight resumes from its checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from lrtransfer.config import ConfigError, format_errors
from lrtransfer.data import ensure_corpora
from lrtransfer.phases import Phase
from lrtransfer.records import atomic, store
from lrtransfer.sweep.lock import folder_lock
from lrtransfer.sweep.placement import Placement
from lrtransfer.sweep.plan import PlannedRun, plan_frame, write_plan
from lrtransfer.sweep.spec import SPEC_FILE, SweepSpec, dump_spec, load_spec
from lrtransfer.sweep.stages import run_stages
from lrtransfer.sweep.tables import STORE_FILE, join_store
from lrtransfer.sweep.tasks import Executor, Outcome, Task

EXECUTORS = ("local", "ray")


@dataclass
class SweepReport:
    """What a `run_sweep` call did: plan size, runs trained now, failures (config hash → error)."""

    out: Path
    planned: list[PlannedRun] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. an arm left out of phase 2
    warnings: list[str] = field(default_factory=list)  # e.g. a phase-1 pick at the edge of its grid
    refined: int = 0  # runs the refine stage added

    @property
    def failures(self) -> dict[str, str]:
        return {o.task.config_hash: f"{o.task.label}: {o.error}" for o in self.outcomes if o.status == store.FAILED}

    @property
    def ok(self) -> bool:
        """No run failed and every stage could be planned."""
        return not self.failures and not self.notes

    def text(self) -> str:
        """A few lines for the terminal."""
        count = {s: sum(o.status == s for o in self.outcomes) for s in store.STATUSES}
        unique = len({r.config_hash for r in self.planned})
        trained = ", ".join(f"{n} {s}" for s, n in count.items())
        lines = [f"{self.out}: {len(self.planned)} planned rows, {unique} distinct runs; this call trained {trained}"]
        lines += [f"FAILED {h} {err}" for h, err in self.failures.items()] + self.notes
        lines += [f"refine: {self.refined} runs added with more seeds"] if self.refined else []
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def run_sweep(spec: SweepSpec | Mapping[str, Any] | str | Path, out: str | Path, *, workers: int | None = None,
              threads: int = 1, executor: str = "local", ray_address: str | None = None,
              progress: bool | None = None, on_stage: Callable[[str], None] | None = None,
              placement: Placement | Mapping[str, Any] | None = None) -> SweepReport:
    """Run (or resume) the sweep `spec` in the folder `out`; see the module doc and docs/study.md.

    `workers` × `threads`: parallel runs × torch threads each (default: one 1-thread worker per
    core). `executor`: ``local`` (a process pool) or ``ray`` (`ray_address` joins a cluster).
    `on_stage(label)` is called after each stage that trained something (e.g. a partial report).
    `placement`: the GPUs of the runs (`Placement`: ``gpus``, ``runs_per_gpu``, ``gpus_per_run``;
    default: every visible GPU, one run each, on the local executor).
    """
    from lrtransfer.sweep.worker import serving

    if serving():
        raise RuntimeError("a sweep was started in a sweep worker, by the module that defines the objective: a script "
                           "that starts its study must do so under `if __name__ == \"__main__\":`")
    spec, out = load_spec(spec), Path(out)
    runner = _executor(executor, workers, threads, ray_address, progress, load_placement(placement))
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        return _run(spec, out, runner, on_stage)


def _run(spec: SweepSpec, out: Path, executor: Executor, on_stage: Callable[[str], None] | None) -> SweepReport:
    atomic.write_text(out / SPEC_FILE, dump_spec(spec))
    report = SweepReport(out)
    with executor as ex:
        run_stages(spec, _Trainer(spec, out, store.open(out / STORE_FILE), ex, report, on_stage))
    return report


@dataclass
class _Trainer:
    """What the stages train with (`stages.Trainer`): the plan, the store, the executor, the report."""

    spec: SweepSpec
    out: Path
    db: store.RunStore
    executor: Executor
    report: SweepReport
    on_stage: Callable[[str], None] | None = None

    @property
    def notes(self) -> list[str]:
        return self.report.notes

    @property
    def warnings(self) -> list[str]:
        return self.report.warnings

    @property
    def refined(self) -> int:
        return self.report.refined

    @refined.setter
    def refined(self, count: int) -> None:
        self.report.refined = count

    def train(self, runs: list[PlannedRun], label: str) -> pd.DataFrame:
        """Add `runs` to the plan, train the distinct ones not finished yet; their results rows."""
        self.report.planned += runs
        write_plan(self.out, self.report.planned)
        tasks = {r.config_hash: self._task(r) for r in runs if not self.db.is_finished(r.config_hash)}
        ensure_corpora(data for r in runs if r.config_hash in tasks for data in r.config.corpora())  # once, here
        outcomes = self.executor.run(list(tasks.values()), label)
        self.report.outcomes += outcomes
        if outcomes and self.on_stage is not None:
            self.on_stage(label)
        return join_store(plan_frame(runs), self.db, self.out)

    def results(self, phase: Phase) -> pd.DataFrame:
        planned = [r for r in self.report.planned if r.phase == phase]
        return join_store(plan_frame(planned), self.db, self.out)

    def _task(self, run: PlannedRun) -> Task:
        label = f"{run.phase.title} {run.arm} {run.width_mult:g}x lr={run.lr:g} seed {run.seed}"
        folder = os.path.abspath(self.out / run.folder)  # an objective that changes directory writes here all the same
        return Task(config=run.config.to_dict(), config_hash=run.config_hash, folder=folder, store=str(self.db.path),
                    sweep=self.spec.name, label=label, phase=run.phase, arm=run.arm, timeout_s=self.spec.timeout)


def load_placement(placement: Placement | Mapping[str, Any] | None) -> Placement:
    """A validated `Placement`; a bad value raises `ConfigError` naming the field."""
    if placement is None or isinstance(placement, Placement):
        return placement or Placement()
    try:
        return Placement.model_validate(placement)
    except ValidationError as err:
        raise ConfigError(format_errors(err, "invalid placement")) from None


def _executor(name: str, workers: int | None, threads: int, address: str | None, progress: bool | None,
              placement: Placement):
    if name == "local":
        if address is not None:
            raise ValueError("ray_address: only used with executor='ray'")
        from lrtransfer.sweep.local import LocalExecutor

        return LocalExecutor(workers, threads, progress, placement)
    if name == "ray":
        from lrtransfer.sweep.ray_executor import RayExecutor

        return RayExecutor(workers, threads, address, progress, placement)
    raise ValueError(f"executor: {name!r} is not one of {'|'.join(EXECUTORS)}")
