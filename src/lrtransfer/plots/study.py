"""The study's figures, analogues of the paper's Figures 1, 3, 4, 5, 6 and 16.

Each figure is a data function (``results``, ``align`` -> tidy DataFrame, or None with the
reason logged when its runs are absent) and a plot function (``df``, ``save_to``) that writes
``<name>.png`` and the plotted numbers as ``<name>.csv`` beside it; it never re-runs training.
``write_study_figures`` draws every figure whose inputs are there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lrtransfer.analysis import Analysis
from lrtransfer.plots.alignment import (
    alignment_data,
    dynamics_runs,
    layer_alignment_data,
    plot_alignment,
    plot_layer_alignment,
    plot_rrc,
    rrc_data,
)
from lrtransfer.plots.theory import write_theory_figures
from lrtransfer.plots.transfer import plot_transfer, transfer_data, warmup_transfer_data
from lrtransfer.plots.warmup import plot_warmup_effect, warmup_effect_data

__all__ = [
    "FIGURES", "FigureInfo", "alignment_data", "dynamics_runs", "layer_alignment_data",
    "plot_alignment", "plot_layer_alignment", "plot_rrc", "plot_transfer", "plot_warmup_effect",
    "plot_warmup_transfer", "rrc_data", "transfer_data", "warmup_effect_data", "warmup_transfer_data",
    "write_study_figures", "write_theory_figures",
]


@dataclass(frozen=True)
class FigureInfo:
    """One written figure: its name, image, numbers, title and what to look for."""

    name: str
    png: Path
    csv: Path
    title: str
    caption: str


def plot_warmup_transfer(df: pd.DataFrame | None, save_to: Path) -> Path | None:
    """Figure 6: `plot_transfer` of the warmup arms."""
    return plot_transfer(df, save_to, title="Can a stronger warmup replace μP's (η/m, mλ)? Loss vs base LR")


@dataclass(frozen=True)
class _Figure:
    name: str
    title: str
    caption: str
    # (results, align, warmup arms, analysis) -> the figure's numbers, or None to skip it
    data: Callable[[pd.DataFrame, pd.DataFrame | None, Sequence[str], Analysis | None], pd.DataFrame | None]
    plot: Callable[[pd.DataFrame, Path], Path | None]


FIGURES = (
    _Figure("figure1_transfer", "LR transfer under each weight-decay rule (Figure 1)",
            "If the LR transfers, the curves' minima (stars) line up vertically across widths and the "
            "grey dotted line, the LR tuned at the smallest width, stays near every minimum. In the paper "
            "μP transfers with independent WD (η/m, mλ) while with standard WD the optimum drifts to higher "
            "base LRs as the width grows.",
            lambda r, a, w, an: transfer_data(r, warmup_arms=w, analysis=an), plot_transfer),
    _Figure("figure3_rrc", "Relative representation change across widths (Figure 3)",
            "The RRC (left) is the alignment ratio (middle) times the relative update (right), Eq 4. In the "
            "paper the alignment ratio soon becomes width-independent (≈ 1), so only independent WD, which "
            "keeps the relative update equal across widths, keeps the RRC equal; with standard WD the wide "
            "model's RRC falls below the narrow one's for most of training.",
            lambda r, a, w, an: rrc_data(r, a, best=_best(an)), plot_rrc),
    _Figure("figure4_alignment", "Alignment at identical hyperparameters (Figure 4)",
            "μP assumes α_W ≈ 1/√C (dotted) and α_ΔW = Θ(1), i.e. an alignment ratio growing like √C. Look "
            "for how briefly that holds: in the paper the update alignment soon drops and depends on the "
            "width while the ratio becomes similar across widths, contrary to μP's assumption.",
            lambda r, a, w, an: alignment_data(r, a), plot_alignment),
    _Figure("figure5_warmup_effect", "μP with independent WD acts as an extra warmup (Figure 5)",
            "(η/m, mλ) has the same η·λ as (η, λ), so both relative updates reach the same equilibrium, but "
            "the scaled run starts m times smaller: the ratio (right) rises from 1/m towards 1, like an extra "
            "warmup. The dashed line is the simple RMS model (Eq 30, 38) along both runs' actual LRs; "
            "expect the shape, not an exact match.",
            lambda r, a, w, an: warmup_effect_data(r, a, best=_best(an)), plot_warmup_effect),
    _Figure("figure6_warmup_transfer", "Warmup schedules instead of μP scaling (Figure 6)",
            "Compare how well each schedule's minima line up across widths with μP + independent WD. In the "
            "paper a longer linear warmup alone transfers poorly, while the width-dependent exp (Eq 14) and "
            "decay-away (Eq 15) warmups can transfer but need tuning.",
            lambda r, a, w, an: warmup_transfer_data(r, w, analysis=an), plot_warmup_transfer),
    _Figure("figure16_layer_alignment", "Alignment ratio of every layer halfway through (Figure 16)",
            "μP expects the alignment ratio to grow like √(fan-in), i.e. to separate the widths. In the "
            "paper it is ≈ 1 for nearly every layer and similar across widths halfway through training.",
            lambda r, a, w, an: layer_alignment_data(r, a, best=_best(an)), plot_layer_alignment),
)


def _best(analysis: Analysis | None) -> pd.DataFrame | None:
    return None if analysis is None else analysis.best


def write_study_figures(results: pd.DataFrame | None, align: pd.DataFrame | None, out_dir: Path,
                        warmup_arms: Sequence[str] = (), analysis: Analysis | None = None) -> list[FigureInfo]:
    """Draw every figure whose runs are present into ``out_dir`` (PNG + CSV each); skipped
    figures are absent from the returned list (their reason is logged at INFO). ``warmup_arms``:
    the arms of Figure 6 (the spec's ``warmup_arms``); ``analysis``: the results' one
    `analysis.analyze`, handed to every figure instead of refitting."""
    out_dir = Path(out_dir)
    written = []
    for fig in FIGURES:
        df = fig.data(results, align, warmup_arms, analysis)
        png = fig.plot(df, out_dir / f"{fig.name}.png") if df is not None else None
        if png is None:  # the data or plot function has logged why
            continue
        written.append(FigureInfo(fig.name, png, png.with_suffix(".csv"), fig.title, fig.caption))
    return written
