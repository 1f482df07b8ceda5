"""What the study figures share: style, width colours, saving PNG + CSV, and run selection."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

log = logging.getLogger("lrtransfer.plots")

STYLE = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "legend.fontsize": 9,
         "xtick.labelsize": 9.5, "ytick.labelsize": 9.5, "figure.titlesize": 12.5, "axes.grid": True,
         "grid.alpha": 0.3}
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


def save(fig: plt.Figure, df: pd.DataFrame, save_to: Path) -> Path:
    """Write ``save_to`` (PNG) and the plotted numbers as CSV beside it (same stem); close ``fig``."""
    save_to = Path(save_to)
    save_to.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(save_to, dpi=120)
    plt.close(fig)
    df.to_csv(save_to.with_suffix(".csv"), index=False, float_format="%.10g")
    return save_to


def is_phase(df: pd.DataFrame, phase) -> pd.Series:
    """Mask of rows in ``phase`` (2 == "2"; "dynamics")."""
    return df["phase"].astype(str) == str(phase)


def nearest_lr(available, target: float) -> float:
    """The LR of ``available`` nearest to ``target`` in log space."""
    lrs = np.unique(np.asarray(list(available), dtype=float))
    return float(lrs[np.argmin(np.abs(np.log(lrs / target)))])


def same_lr(series: pd.Series, lr: float) -> pd.Series:
    return np.isclose(series.astype(float), lr, rtol=1e-6, atol=0)


def seed_mean(df: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean over seeds (and duplicate plan rows of one run) per ``keys``."""
    keys = [k for k in keys if k in df]
    return df.groupby(keys, dropna=False, sort=True)[metrics].mean().reset_index()


def drop_tail(df: pd.DataFrame, keep: float = 0.995) -> pd.DataFrame:
    """Drop the final 0.5% of each run, as the paper does (G.3.2: changes go to 0 with the LR)."""
    return df[df["progress"] <= keep] if "progress" in df else df
