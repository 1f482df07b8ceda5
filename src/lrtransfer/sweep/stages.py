"""The sweep's stages: each owns its plan, its pick and its next round (Appendix G.2-3).

A stage plans runs from the spec and what earlier stages picked, has a `Trainer` train a round,
reads the results (once per round) and decides the next round, or that it is done:

* `Phase1` — per arm, one global LR at the base width; picks the LR phase 2 freezes.
* `Phase2` — the base LR at every width: the whole grid, or (spec ``bracket``) rounds that start
  around each curve's expected optimum and grow a curve while its best LR sits at its edge.
* `Refine` — rounds of one more seed at the LRs around each inconclusive arm's optimum.
* `Dynamics` — the no-μP runs at the standard arm's best (η, λ) and the Figure 5 partner.

`run_stages(spec, trainer)` runs them in the spec's order. Planning a run (its config, seed and
widths) lives in `sweep.plan`; what is best in a frame of results lives in `analysis`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
import pandas as pd

from lrtransfer.analysis import Analysis, analyze, lr_curves
from lrtransfer.analysis.picks import dynamics_lr, figure5_lrs, phase1_edges, phase1_picks
from lrtransfer.phases import Phase
from lrtransfer.sweep.plan import (
    PlannedRun,
    dynamics,
    figure5_partner,
    first_brackets,
    frozen_lrs,
    phase1,
    phase2,
    refinement,
)
from lrtransfer.sweep.spec import SweepSpec

FixedLRs = Mapping[str, float | None]  # per arm, the LR of input, gain and bias parameters (None: the base LR)


class Trainer(Protocol):
    """What a stage needs of the runner: train a round, read back a phase's results, take notes."""

    notes: list[str]  # e.g. an arm left out of phase 2
    warnings: list[str]  # e.g. a phase-1 pick at the edge of its grid
    refined: int  # runs the refine stage added

    def train(self, runs: list[PlannedRun], label: str) -> pd.DataFrame:
        """Add `runs` to the plan and train those not finished; the results rows of `runs`."""
        ...

    def results(self, phase: Phase) -> pd.DataFrame:
        """The results rows of every run planned so far in `phase`."""
        ...


class Phase1:
    """Per arm, the global LR (every parameter) at the base width; its pick is frozen for phase 2."""

    label = "phase 1"

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec

    def run(self, trainer: Trainer) -> dict[str, float | None]:
        """Train phase 1; each arm's frozen LR for phase 2 (arms without a finished run are left out)."""
        results = trainer.train(phase1(self.spec), self.label)
        trainer.warnings.extend(phase1_edges(results))
        return frozen_lrs(self.spec, pick(results, trainer, "phase 2 (no finished phase-1 run)"))


class Phase2:
    """The base LR of the width-scaling layers at every width, the LR of the rest frozen (`fixed`)."""

    label = "phase 2"

    def __init__(self, spec: SweepSpec, fixed: FixedLRs) -> None:
        self.spec, self.fixed = spec, fixed

    def run(self, trainer: Trainer) -> pd.DataFrame:
        """Phase 2 on the whole grid, or (spec ``bracket``) adaptively: each curve starts from the
        `bracket` grid LRs around its expected optimum and grows by one LR a round while its best
        LR is at its edge. The expected optimum moves the base width's best LR (the frozen phase-1
        pick; in one phase, the best of the base width's own curve, run on the whole grid first) by
        the arm's `expected_shifts` per width doubling. All phase-2 results."""
        spec = self.spec
        if spec.bracket is None:
            return trainer.train(phase2(spec, self.fixed), self.label)
        lrs: dict[tuple[str, float], list[float]] = {}
        centers = dict(self.fixed)
        if spec.protocol == "one_phase":
            base = min(spec.widths)
            lrs = {(arm, base): list(spec.lrs) for arm in self.fixed}
            centers = pick(trainer.train(phase2(spec, self.fixed, lrs), "phase 2 (base width)"), trainer,
                           "phase 2 (no base run)")
        new = first_brackets(spec, {arm: centers[arm] for arm in self.fixed if arm in centers}, skip=list(lrs))
        for k in range(len(spec.lrs)):  # each round adds an LR per unbracketed curve: the grid bounds the rounds
            trainer.train(phase2(spec, self.fixed, new), self.label if k == 0 else f"phase 2 (more LRs, round {k + 1})")
            new = bracket_extensions(lr_curves(trainer.results(Phase.TWO)), spec.lrs)
            if not new:
                break
        return trainer.results(Phase.TWO)


class Refine:
    """Rounds of one more seed where a verdict is inconclusive (spec ``refine``, ``refine_budget``)."""

    def __init__(self, spec: SweepSpec, fixed: FixedLRs) -> None:
        self.spec, self.fixed = spec, fixed

    def next_round(self, analysis: Analysis, k: int, budget: int) -> list[PlannedRun]:
        """Round ``k``'s runs: seed ``max(seeds) + 1 + k`` at `refine_points`, at most `budget` runs."""
        seed = max(self.spec.seeds) + 1 + k
        runs = [r for arm, m, lrs in refine_points(analysis) if arm in self.fixed
                for r in refinement(self.spec, arm, m, lrs, seed, self.fixed[arm])]
        return runs[:budget]

    def run(self, trainer: Trainer, done: pd.DataFrame) -> pd.DataFrame:
        """Rounds until every verdict is decisive, ``refine`` rounds are done or ``refine_budget``
        runs were added; all phase-2 results."""
        budget = self.spec.refine_budget
        for k in range(self.spec.refine):
            runs = self.next_round(analyze(done), k, budget)
            if not runs:
                break
            budget -= len(runs)
            trainer.refined += len(runs)
            trainer.train(runs, f"refine {k + 1}")
            done = trainer.results(Phase.TWO)
        return done


class Dynamics:
    """The no-μP runs at the standard arm's best (η, λ) at the widest width after μP scaling
    (G.3.3), and the independent partner of the Figure 5 pair (G.3.4)."""

    label = "dynamics"

    def __init__(self, spec: SweepSpec, fixed: FixedLRs) -> None:
        self.spec, self.fixed = spec, fixed

    def plan(self, best: pd.DataFrame, done: pd.DataFrame) -> list[PlannedRun]:
        """The stage's runs from the phase-2 results `done` and their `best_lrs` (empty: nothing to pick from)."""
        lr, pair = dynamics_lr(done, best), figure5_lrs(done, best)
        if lr is None or pair is None:
            return []
        m, _, partner_lr = pair
        runs = dynamics(self.spec, lr)
        if "independent" in self.spec.rules and "independent" in self.fixed:
            runs += figure5_partner(self.spec, m, partner_lr, self.fixed["independent"])
        return runs

    def run(self, trainer: Trainer, done: pd.DataFrame) -> None:
        runs = self.plan(analyze(done).best, done)
        if not runs:
            trainer.notes.append("dynamics: not planned (no finished phase-2 standard run)")
            return
        trainer.train(runs, self.label)


def run_stages(spec: SweepSpec, trainer: Trainer) -> None:
    """Phase 1 (two-phase protocol), phase 2, refine and dynamics (when the spec asks), in order."""
    fixed: dict[str, float | None] = dict.fromkeys(spec.arm_overrides())
    if spec.protocol == "two_phase":
        fixed = Phase1(spec).run(trainer)
    done = Phase2(spec, fixed).run(trainer)
    if spec.refine:
        done = Refine(spec, fixed).run(trainer, done)
    if spec.dynamics:
        Dynamics(spec, fixed).run(trainer, done)


def pick(results: pd.DataFrame, trainer: Trainer, missing: str) -> dict[str, float]:
    """The best LR per arm of `results` (`phase1_picks`); an arm with none is noted as `missing`."""
    best = phase1_picks(results)
    trainer.notes.extend(f"arm {arm}: not planned in {missing}" for arm in dict.fromkeys(results["arm"])
                         if arm not in best)
    return best


def refine_points(analysis: Analysis, verdict: str = "inconclusive") -> list[tuple[str, float, list[float]]]:
    """Where one more seed can decide a verdict: for every arm whose verdict is ``verdict``, at the
    base and the widest width, the grid LRs within one grid step of that curve's grid optimum
    (finite ones). Returns ``(arm, m, lrs)`` per curve."""
    best, table, curves = analysis.best, analysis.table, analysis.curves
    if best.empty:
        return []
    points = []
    for arm in table.loc[table.verdict == verdict, "arm"]:
        b = best[best.arm == arm]
        for m in sorted({b.width_mult.min(), b.width_mult.max()}):
            c = curves[(curves.arm == arm) & (curves.width_mult == m)].sort_values("lr").reset_index(drop=True)
            finite = np.isfinite(c.loss.to_numpy())
            if not finite.any():
                continue
            i = int(np.argmin(np.where(finite, c.loss, np.inf)))
            near = [float(c.lr[j]) for j in range(max(0, i - 1), min(len(c), i + 2)) if finite[j]]
            points.append((arm, float(m), near))
    return points


def bracket_extensions(curves: pd.DataFrame, grid: list[float]) -> dict[tuple[str, float], list[float]]:
    """The next grid LR of each phase-2 curve (`lr_curves` frame) whose best LR is not yet bracketed:
    below its lowest LR when that one is the best or every run was unstable (too high an LR), above
    its highest when that one is the best; nothing where the grid ends. ``{(arm, m): [lr]}``."""
    grid, more = sorted(grid), {}
    for (arm, m), c in curves.groupby(["arm", "width_mult"], sort=True):
        ran = c.sort_values("lr")
        lrs, loss = ran.lr.to_numpy(), ran.loss.to_numpy()
        best = int(np.argmin(loss)) if np.isfinite(loss).any() else 0
        below = [lr for lr in grid if lr < lrs[0] * (1 - 1e-9)]
        above = [lr for lr in grid if lr > lrs[-1] * (1 + 1e-9)]
        if best == 0 and below:
            more[(str(arm), float(m))] = [below[-1]]
        elif best == len(lrs) - 1 and above and np.isfinite(loss[best]):
            more[(str(arm), float(m))] = [above[0]]
    return more
