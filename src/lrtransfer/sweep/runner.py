"""Run a sweep: plan a stage, dispatch its not-yet-finished runs, pick LRs, plan the next stage.

Stages: phase 1 (two-phase protocol only) → phase 2 → dynamics (optional). The sweep folder holds
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

from pydantic import ValidationError

from lrtransfer.analysis.picks import (
    bracket_extensions,
    dynamics_lr,
    figure5_lrs,
    phase1_edges,
    phase1_picks,
    refine_points,
)
from lrtransfer.config import ConfigError, RunConfig, format_errors
from lrtransfer.data import ensure_corpora
from lrtransfer.records import atomic, store
from lrtransfer.sweep.lock import folder_lock
from lrtransfer.sweep.placement import Placement
from lrtransfer.sweep.plan import (
    PlannedRun,
    dynamics,
    figure5_partner,
    first_brackets,
    frozen_lrs,
    phase1,
    phase2,
    plan_frame,
    refinement,
    write_plan,
)
from lrtransfer.sweep.spec import SPEC_FILE, SweepSpec, dump_spec, load_spec
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
        stage = _Stage(spec, out, store.open(out / STORE_FILE), ex, report, on_stage)
        fixed: dict[str, float | None] = dict.fromkeys(spec.arm_overrides())
        if spec.protocol == "two_phase":
            picked = stage.run(phase1(spec), "phase 1")
            report.warnings += phase1_edges(picked)
            fixed = frozen_lrs(spec, stage.pick(picked, "phase 2 (no finished phase-1 run)"))
        done = stage.run_phase2(fixed)
        if spec.refine:
            done = stage.refine(fixed)
        if spec.dynamics:
            stage.run_dynamics(done, fixed)
    return report


@dataclass
class _Stage:
    spec: SweepSpec
    out: Path
    db: store.RunStore
    executor: Executor
    report: SweepReport
    on_stage: Callable[[str], None] | None = None

    def run(self, runs: list[PlannedRun], label: str):
        """Add `runs` to the plan, train the distinct ones not finished yet; their results rows."""
        self.report.planned += runs
        write_plan(self.out, self.report.planned)
        tasks = {r.config_hash: self._task(r) for r in runs if not self.db.is_finished(r.config_hash)}
        # fetch once, before the workers
        ensure_corpora(r.config.data for r in runs if r.config_hash in tasks and isinstance(r.config, RunConfig))
        outcomes = self.executor.run(list(tasks.values()), label)
        self.report.outcomes += outcomes
        if outcomes and self.on_stage is not None:
            self.on_stage(label)
        return join_store(plan_frame(runs), self.db, self.out)

    def run_phase2(self, fixed: Mapping[str, float | None]):
        """Phase 2 on the whole grid, or (spec ``bracket``) adaptively: each curve starts from the
        `bracket` grid LRs around its expected optimum and grows by one LR a round while its best
        LR is at its edge. The expected optimum moves the base width's best LR (the frozen phase-1
        pick; in one phase, the best of the base width's own curve, run on the whole grid first) by
        the arm's `expected_shifts` per width doubling. All phase-2 results."""
        spec = self.spec
        if spec.bracket is None:
            return self.run(phase2(spec, fixed), "phase 2")
        lrs: dict[tuple[str, float], list[float]] = {}
        centers = dict(fixed)
        if spec.protocol == "one_phase":
            base = min(spec.widths)
            lrs = {(arm, base): list(spec.lrs) for arm in fixed}
            centers = self.pick(self.run(phase2(spec, fixed, lrs), "phase 2 (base width)"), "phase 2 (no base run)")
        new = first_brackets(spec, {arm: centers[arm] for arm in fixed if arm in centers}, skip=list(lrs))
        for k in range(len(spec.lrs)):  # each round adds an LR per unbracketed curve: the grid bounds the rounds
            self.run(phase2(spec, fixed, new), "phase 2" if k == 0 else f"phase 2 (more LRs, round {k + 1})")
            new = bracket_extensions(self.phase2_results(), spec.lrs)
            if not new:
                break
        return self.phase2_results()

    def refine(self, fixed: Mapping[str, float | None]):
        """The refine stage (spec ``refine``): rounds of one more seed at the LRs around each
        inconclusive arm's optimum at the base and widest widths, until every verdict is decisive,
        ``refine`` rounds are done or ``refine_budget`` runs were added; all phase-2 results."""
        budget, done = self.spec.refine_budget, self.phase2_results()
        for k in range(self.spec.refine):
            seed = max(self.spec.seeds) + 1 + k
            runs = [r for arm, m, lrs in refine_points(done) if arm in fixed
                    for r in refinement(self.spec, arm, m, lrs, seed, fixed[arm])][:budget]
            if not runs:
                break
            budget -= len(runs)
            self.report.refined += len(runs)
            self.run(runs, f"refine {k + 1}")
            done = self.phase2_results()
        return done

    def phase2_results(self):
        planned = [r for r in self.report.planned if r.phase == 2]
        return join_store(plan_frame(planned), self.db, self.out)

    def run_dynamics(self, done, fixed: Mapping[str, float | None]) -> None:
        """The dynamics stage: the no-muP runs at the standard arm's best (η, λ) at the widest width
        after μP scaling (G.3.3) and the independent partner of the Figure 5 pair (G.3.4)."""
        lr, pair = dynamics_lr(done), figure5_lrs(done)
        if lr is None or pair is None:
            self.report.notes.append("dynamics: not planned (no finished phase-2 standard run)")
            return
        m, _, partner_lr = pair
        runs = dynamics(self.spec, lr)
        if "independent" in self.spec.rules and "independent" in fixed:
            runs += figure5_partner(self.spec, m, partner_lr, fixed["independent"])
        self.run(runs, "dynamics")

    def pick(self, frame, missing: str) -> dict[str, float]:
        """The best LR per arm of `frame`; an arm with none is noted as `missing`."""
        best = phase1_picks(frame)
        self.report.notes += [f"arm {arm}: not planned in {missing}" for arm in dict.fromkeys(frame["arm"])
                              if arm not in best]
        return best

    def _task(self, run: PlannedRun) -> Task:
        label = f"phase {run.phase} {run.arm} {run.width_mult:g}x lr={run.lr:g} seed {run.seed}"
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
