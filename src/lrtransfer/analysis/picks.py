"""The LRs a study picks from finished runs: phase 1's frozen LR per arm (Appendix G.2), and the
base LR of the runs the dynamics figures compare. Both come from `best_lrs`, the one best-LR rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrtransfer.analysis.transfer import best_lrs


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


def base_best_lr(results: pd.DataFrame | None, arms=("independent", "standard")) -> float | None:
    """The phase-2 grid LR best at the smallest width, for the first of ``arms`` that has one."""
    if results is None or results.empty or "final_train_loss" not in results:
        return None
    best = best_lrs(results)
    for arm in arms:
        b = best[best.arm == arm].sort_values("width_mult") if not best.empty else best
        if len(b) and np.isfinite(b.lr_grid.iloc[0]):
            return float(b.lr_grid.iloc[0])
    return None
