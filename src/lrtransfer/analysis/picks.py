"""The LRs a study picks from finished runs: phase 1's frozen LR per arm (Appendix G.2), and the
base LR of the runs the dynamics figures compare. Both come from `best_lrs`, the one best-LR rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrtransfer.analysis.frames import in_phase
from lrtransfer.analysis.transfer import best_lrs
from lrtransfer.phases import Phase


def phase1_picks(frame: pd.DataFrame, metric: str = "final_train_loss") -> dict[str, float]:
    """Each arm's grid LR with the lowest seed-mean loss in `frame` (phase 1 of Appendix G.2).

    An LR wins only if all its seeds finished (an unstable seed makes it +inf); ties go to the
    smaller LR. An arm without any stable LR is left out of the result.
    """
    best = best_lrs(frame, metric, phase=None)
    if best.empty:
        return {}
    best = best[np.isfinite(best["loss_grid"])]
    return {arm: float(lr) for arm, lr in zip(best["arm"], best["lr_grid"])}


def base_best_lr(results: pd.DataFrame | None, arms=("independent", "standard"),
                 best: pd.DataFrame | None = None) -> float | None:
    """The phase-2 grid LR best at the smallest width, for the first of ``arms`` that has one
    (``best``: the results' `best_lrs`, when already computed)."""
    if results is None or results.empty or "final_train_loss" not in results:
        return None
    best = best_lrs(results) if best is None else best
    for arm in arms:
        b = best[best.arm == arm].sort_values("width_mult") if not best.empty else best
        if len(b) and np.isfinite(b.lr_grid.iloc[0]):
            return float(b.lr_grid.iloc[0])
    return None


def widest_best(results: pd.DataFrame, arm: str = "standard",
                best: pd.DataFrame | None = None) -> tuple[float, float] | None:
    """``(m, base LR)``: the widest width of ``arm``'s phase-2 runs and its grid-best base LR there."""
    best = best_lrs(results) if best is None else best
    if best.empty:
        return None
    b = best[(best.arm == arm) & np.isfinite(best.loss_grid)].sort_values("width_mult")
    return (float(b.width_mult.iloc[-1]), float(b.lr_grid.iloc[-1])) if len(b) else None


def dynamics_lr(results: pd.DataFrame, best: pd.DataFrame | None = None) -> float | None:
    """The (η, λ) of the dynamics runs (Figures 4, 16; Appendix G.3.3): the hidden-layer LR of the
    standard arm's best run at the widest width *after* μP scaling, η = η_base/m, which those runs
    apply to every parameter at every width (the paper: 4e-3 = 6.4e-2/16)."""
    picked = widest_best(results, "standard", best)
    return None if picked is None else picked[1] / picked[0]


def figure5_lrs(results: pd.DataFrame, best: pd.DataFrame | None = None) -> tuple[float, float, float] | None:
    """``(m, standard base LR, independent base LR)`` of the Figure 5 pair (Appendix G.3.4): the
    standard arm's best run at the widest width m, hidden layers (η/m, λ), and the independent run
    with the same LR-WD product, base LR η/m, hidden layers (η/m², mλ)."""
    picked = widest_best(results, "standard", best)
    return None if picked is None else (picked[0], picked[1], picked[1] / picked[0])


def phase1_edges(results: pd.DataFrame) -> list[str]:
    """A warning per arm whose phase-1 pick lies at the edge of its grid: the frozen LR may be off."""
    frame = results[in_phase(results, Phase.ONE)]
    if frame.empty:
        return []
    notes = []
    for arm, lr in phase1_picks(frame).items():
        grid = np.sort(frame.loc[frame.arm == arm, "lr"].unique())
        if len(grid) > 1 and lr in (grid[0], grid[-1]):
            side = "lowest" if lr == grid[0] else "highest"
            notes.append(f"phase 1, arm {arm}: the best LR {lr:g} is the {side} of the phase-1 grid, so the LR "
                         f"frozen for phase 2 may be off; extend phase1_lrs {'down' if side == 'lowest' else 'up'}")
    return notes
