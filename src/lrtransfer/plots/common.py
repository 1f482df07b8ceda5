"""What the study figures share: style, labels, width colours, and saving PNG + CSV.

Choosing a matplotlib backend is the caller's business (the CLI picks Agg); notebooks keep theirs.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd

from lrtransfer.records import atomic

log = logging.getLogger("lrtransfer.plots")

STYLE = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "legend.fontsize": 9,
         "xtick.labelsize": 9.5, "ytick.labelsize": 9.5, "figure.titlesize": 12.5, "axes.grid": True,
         "grid.alpha": 0.3,
         "text.parse_math": False}  # labels carry user strings (arm names): plain text, a "$" is a dollar
ARM_LABELS = {"none": "μP, no weight decay", "standard": "μP + standard WD (η/m, λ)",
              "independent": "μP + independent WD (η/m, mλ)"}


def skip(figure: str, reason: str) -> None:
    """Say why a figure is not drawn (its data function then returns None)."""
    log.info("%s: skipped, %s", figure, reason)
    return None


def width_colors(widths) -> dict[float, tuple]:
    """One colour per width multiplier, light (narrow) to dark (wide), as in the paper."""
    widths = sorted(set(float(w) for w in widths))
    cmap = plt.get_cmap("viridis_r")
    return {w: cmap(0.15 + 0.75 * i / max(1, len(widths) - 1)) for i, w in enumerate(widths)}


def width_label(m: float, width: float | None = None) -> str:
    return f"{m:g}×" + (f" (width {int(width)})" if width is not None and np.isfinite(width) else "")


def positive(values) -> np.ndarray:
    """Values for a log axis: non-positive and non-finite entries become NaN (gaps, no warnings)."""
    v = np.asarray(values, dtype=float)
    return np.where(np.isfinite(v) & (v > 0), v, np.nan)


class _PlainLog(mticker.LogFormatter):
    """Labels the ticks `LogFormatter` would label, as plain numbers (2, 0.5, not 2×10⁰)."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def plain_log(ax: plt.Axes) -> None:
    """Plain numbers on a log y-axis that spans about a decade (ratios)."""
    ax.yaxis.set_major_formatter(_PlainLog(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(_PlainLog(labelOnlyBase=False, minor_thresholds=(1.5, 0.6)))


def save(fig: plt.Figure, df: pd.DataFrame, save_to: Path, **savefig) -> Path:
    """Write ``save_to`` (PNG) and the plotted numbers as CSV beside it (same stem); close ``fig``."""
    save_to, png = Path(save_to), io.BytesIO()
    save_to.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(png, **{"format": "png", "dpi": 120, **savefig})
    finally:
        plt.close(fig)
    atomic.write_bytes(save_to, png.getvalue())  # a full disk leaves the old figure, never a cut one
    atomic.write_text(save_to.with_suffix(".csv"), df.to_csv(index=False, float_format="%.10g"))
    return save_to
