"""Analysis of a sweep: pure functions of the ``results`` and ``align`` frames (docs/study.md).

* `transfer` — best LR per (arm, width) with its 90% interval, transfer regret, the optimum's
  shift per width doubling with its interval, one-line verdicts (Figures 1, 6).
* `fit` and `curve_models` — the fitted optimum of each curve and its bootstrap interval.
* `layers` — layer order and roles, the representative layer, run progress, per-step LRs
  and the Eq 38 warmup prediction (Figure 5).
* `picks` — the LRs read off finished runs: phase 1's best LR per arm, the dynamics and Figure 5 LRs.
* `frames` — row selections and seed means shared with the figures.
* `blowups` — finite blow-ups and spikes, taken as unstable points of a curve.
* `result` — `analyze`: all of the above computed once per results frame (`Analysis`), and
  `recommend` — the base LR, per-role LR and λ and timescales at a target width.
"""

from lrtransfer.analysis.blowups import blowups
from lrtransfer.analysis.fit import Curve, fit_arm, slope
from lrtransfer.analysis.layers import (
    hidden_layers,
    layer_lrs,
    layer_order,
    representative_layer,
    warmup_ratio_prediction,
    with_progress,
)
from lrtransfer.analysis.picks import base_best_lr, dynamics_lr, figure5_lrs, phase1_edges, phase1_picks
from lrtransfer.analysis.result import Analysis, Recommendation, analyze, arm_rules, named_rules
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
    "TOLERANCE",
    "Analysis",
    "Curve",
    "Recommendation",
    "analyze",
    "arm_rules",
    "base_best_lr",
    "best_lrs",
    "blowups",
    "dynamics_lr",
    "figure5_lrs",
    "fit_arm",
    "hidden_layers",
    "layer_lrs",
    "layer_order",
    "lr_curves",
    "named_rules",
    "optimum_shift",
    "phase1_edges",
    "phase1_picks",
    "representative_layer",
    "select_phase",
    "slope",
    "verdict_table",
    "verdicts",
    "warmup_ratio_prediction",
    "with_progress",
]
