"""The coord check's figure: activation RMS against width (mup's plot) and the alignment ratio over steps.

Top row: the RMS of every module's output against width at three steps (the first, middle and last
measured), log-log, one line per module, as mup's ``plot_coord_data``: flat lines are what μP wants.
Bottom row, one panel per scaled role (hidden, output): the alignment ratio α_ΔW/α_W (Eq 4) over steps,
median over the role's layers, one colour per width, each with its √m reference dashed: the narrowest
width's ratio at step 0 times √(fan-in ratio), where Eq 5 says the width's ratio should start.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lrtransfer.plots.common import STYLE, plain_log, positive, save, width_colors, width_label
from lrtransfer.roles import SCALED_ROLES


def coord_data(frame: pd.DataFrame) -> pd.DataFrame:
    """The plotted numbers: seed means of activation RMS and alignment ratio per width, step and layer."""
    keys = ["width", "width_mult", "step", "layer", "role", "fan_in"]
    df = frame.assign(fan_in=frame["fan_in"].fillna(-1))  # non-matrix modules have no fan-in; keep their rows
    df = df.groupby(keys, sort=False, as_index=False)[["activation_rms", "alignment_ratio"]].mean()
    return df.assign(fan_in=df["fan_in"].where(df["fan_in"] > 0))


def plot_coord(frame: pd.DataFrame, save_to: str | Path) -> Path:
    """Draw the coord check of ``frame`` (`CoordCheck.frame`) to ``save_to`` (PNG, CSV of `coord_data` beside)."""
    df = coord_data(frame)
    steps = sorted(df.step.unique())
    shown = list(dict.fromkeys([steps[0], steps[len(steps) // 2], steps[-1]]))
    roles = [r for r in SCALED_ROLES if df.loc[df.role == r, "alignment_ratio"].notna().any()]
    ncols = max(len(shown), len(roles), 1)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, ncols, figsize=(4.2 * ncols, 7.2), squeeze=False, constrained_layout=True)
        for ax, step in zip(axes[0], shown):
            _activations(ax, df[df.step == step], step)
        colors = width_colors(df.width_mult)
        for ax, role in zip(axes[1], roles):
            _alignment(ax, df[df.role == role], role, colors)
        for ax in [*axes[0][len(shown):], *axes[1][len(roles):]]:
            ax.set_visible(False)
        fig.suptitle("Coord check: activation size across widths, alignment ratio against √m (Eq 5)")
    return save(fig, df, Path(save_to))


def _activations(ax: plt.Axes, d: pd.DataFrame, step: int) -> None:
    for layer, g in d.groupby("layer", sort=False):
        g = g.sort_values("width")
        ax.plot(g.width, positive(g.activation_rms), marker="o", ms=3, label=layer)
    ax.set(yscale="log", xlabel="width", ylabel="output RMS", title=f"step {step}")
    ax.set_xscale("log", base=2)
    plain_log(ax)
    if step == d.step.min():
        ax.legend(fontsize=7, ncol=2)


def _alignment(ax: plt.Axes, d: pd.DataFrame, role: str, colors: dict) -> None:
    median = d.groupby(["width_mult", "width", "step"], as_index=False)[["alignment_ratio", "fan_in"]].median()
    narrow = median[median.width_mult == median.width_mult.min()]
    start = narrow.dropna(subset=["alignment_ratio"]).iloc[0]  # first step with a defined ratio
    for (m, width), g in median.groupby(["width_mult", "width"]):
        ax.plot(g.step, positive(g.alignment_ratio), color=colors[m], label=width_label(m, width))
        ref = start.alignment_ratio * np.sqrt(g.fan_in.iloc[0] / start.fan_in)
        ax.axhline(ref, color=colors[m], ls="--", lw=0.9)
    ax.set(yscale="log", xlabel="step", ylabel="alignment ratio α_ΔW/α_W",
           title=f"{role} layers (median); dashed: √m reference")
    plain_log(ax)
    ax.legend(fontsize=8)
