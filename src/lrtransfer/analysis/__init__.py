"""Analysis of a sweep: pure functions of the ``results`` and ``align`` frames (docs/study.md).

* `transfer` — best LR per (arm, width) refined by a parabola in log2 LR, transfer regret,
  optimum shift per width doubling and in grid steps, one-line verdicts (Figures 1, 6).
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
from lrtransfer.analysis.transfer import best_lrs, lr_curves, optimum_shift, select_phase, verdict_table, verdicts

__all__ = [
    "alignment_summary",
    "best_lrs",
    "hidden_layers",
    "layer_lrs",
    "layer_order",
    "lr_curves",
    "optimum_shift",
    "representative_layer",
    "rrc_summary",
    "select_phase",
    "verdict_table",
    "verdicts",
    "warmup_ratio_prediction",
    "with_progress",
]
