"""Analysis of a sweep: pure functions of the ``results`` and ``align`` frames (docs/study.md).

* `transfer` — best LR per (arm, width) with its 90% interval, transfer regret, the optimum's
  shift per width doubling with its interval, one-line verdicts (Figures 1, 6).
* `fit` and `curve_models` — the fitted optimum of each curve and its bootstrap interval.
* `dynamics` — alignment-ratio and relative-representation-change summaries (Eq 4; Figures
  3, 4, 16), the representative layer, and the Eq 38 warmup prediction (Figure 5).
"""

from lrtransfer.analysis.dynamics import (
    alignment_summary,
    hidden_layers,
    layer_lrs,
    layer_order,
    representative_layer,
    rrc_summary,
    warmup_ratio_prediction,
    with_progress,
)
from lrtransfer.analysis.fit import NOISE, Curve, fit_arm, slope
from lrtransfer.analysis.transfer import (
    TOLERANCE,
    best_lrs,
    lr_curves,
    optimum_shift,
    select_phase,
    verdict_table,
    verdicts,
)

__all__ = [
    "NOISE",
    "TOLERANCE",
    "Curve",
    "alignment_summary",
    "best_lrs",
    "fit_arm",
    "hidden_layers",
    "layer_lrs",
    "layer_order",
    "lr_curves",
    "optimum_shift",
    "representative_layer",
    "rrc_summary",
    "select_phase",
    "slope",
    "verdict_table",
    "verdicts",
    "warmup_ratio_prediction",
    "with_progress",
]
