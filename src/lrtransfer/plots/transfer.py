"""Transfer plots: final loss vs base LR, one panel per arm, one curve per width (Figures 1 and 6)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from lrtransfer.analysis import Analysis, best_lrs, lr_curves, verdict_table
from lrtransfer.analysis.transfer import signed
from lrtransfer.phases import Phase
from lrtransfer.plots.common import ARM_LABELS, STYLE, save, skip, width_colors, width_label
from lrtransfer.scaling import WD_RULES


def _ordered(arms) -> list[str]:
    arms = list(dict.fromkeys(arms))
    return [a for a in WD_RULES if a in arms] + sorted(a for a in arms if a not in WD_RULES)


def transfer_data(results: pd.DataFrame | None, arms: list[str] | None = None, metric: str = "final_train_loss",
                  phase: Phase | int | str = Phase.TWO, figure: str = "figure 1", warmup_arms: Sequence[str] = (),
                  analysis: Analysis | None = None) -> pd.DataFrame | None:
    """Loss vs base LR per (arm, width) with each curve's fitted optimum (`analysis.best_lrs`).

    Default arms: every arm except the ``warmup_arms`` of Figure 6, weight-decay rules first.
    Columns: ``arm, width_mult, [width,] lr, loss`` (seed mean, inf if unstable), ``loss_std,
    n_seeds, n_unstable, blowup, unstable``, and per curve ``opt_lr, opt_lo, opt_hi`` (the fitted
    optimum and its 90% interval), ``opt_loss, opt_fit, opt_at_edge, opt_claimed, transfer_lr``
    (the grid LR best at the arm's smallest width), and per arm ``m_min, m_max, per_doubling,
    per_doubling_lo, per_doubling_hi, verdict, max_regret`` (`analysis.verdict_table`).
    ``analysis``: the results' `analysis.analyze`, when already computed (same metric and phase).
    """
    if results is None or results.empty or metric not in results or "phase" not in results:
        return skip(figure, f"no results with a {metric!r} column")
    curves = lr_curves(results, metric, phase) if analysis is None else analysis.curves
    if arms is None:
        arms = [a for a in curves.arm.unique() if a not in warmup_arms]
    curves = curves[curves.arm.isin(arms)]
    if curves.empty:
        return skip(figure, f"no phase-{phase} runs of arms {list(arms)}")
    if analysis is None:
        best = best_lrs(results[results.arm.isin(arms)], metric, phase)
        table = verdict_table(best)
    else:
        best, table = analysis.best[analysis.best.arm.isin(arms)], analysis.table[analysis.table.arm.isin(arms)]
    verdict = table[["arm", "m_min", "m_max", "per_doubling", "per_doubling_lo", "per_doubling_hi",
                                   "grid_steps", "verdict", "max_regret"]]
    opt = best.rename(columns={"lr_fit": "opt_lr", "lr_lo": "opt_lo", "lr_hi": "opt_hi", "loss_fit": "opt_loss",
                               "fit": "opt_fit", "at_edge": "opt_at_edge", "optimum_claimed": "opt_claimed"})
    opt = opt[["arm", "width_mult", "opt_lr", "opt_lo", "opt_hi", "opt_loss", "opt_fit", "opt_at_edge", "opt_claimed",
               "transfer_lr"]]
    df = curves.merge(opt, on=["arm", "width_mult"], how="left").merge(verdict, on="arm", how="left")
    df["unstable"] = ~np.isfinite(df["loss"]) | df["blowup"]
    order = {a: i for i, a in enumerate(_ordered(arms))}
    return df.sort_values(["arm", "width_mult", "lr"], key=lambda s: s.map(order) if s.name == "arm" else s,
                          ignore_index=True)


def warmup_transfer_data(results: pd.DataFrame | None, arms: Sequence[str] = (),
                         reference: str | None = "independent", **kw) -> pd.DataFrame | None:
    """Figure 6: transfer curves of the warmup ``arms`` (the spec's ``warmup_arms``), after the
    ``reference`` arm (μP + independent WD, the paper's left panel)."""
    if results is None or results.empty or "arm" not in results:
        return skip("figure 6", "no results")
    present = list(results.arm.unique())
    arms = [a for a in arms if a in present]
    if not arms:
        return skip("figure 6", "the sweep declares no warmup_arms with results")
    arms = ([reference] if reference in present and reference not in arms else []) + list(arms)
    return transfer_data(results, arms, figure="figure 6", **kw)


def _ylim(loss: np.ndarray) -> tuple[float, float]:
    """A y-range focused on the minima: up to twice the spread to the 60th percentile."""
    finite = loss[np.isfinite(loss)]
    lo, hi = finite.min(), finite.max()
    span = np.percentile(finite, 60) - lo
    top = min(hi, lo + 2.5 * span) if span > 0 else hi
    pad = 0.08 * (top - lo) or 0.05 * abs(lo) or 0.1
    return lo - pad, top + pad


def plot_transfer(df: pd.DataFrame | None, save_to: Path, title: str | None = None) -> Path | None:
    """Loss vs base LR (log x): one panel per arm, one colour per width; stars: fitted optima
    (hollow: at the grid edge); ×: unstable LRs; ▲: off the top of the axis; dotted: the LR best
    at the smallest width. Writes PNG and ``df`` as CSV; None for an empty frame."""
    if df is None or df.empty or not np.isfinite(df.loss).any():
        return skip(Path(save_to).stem, "nothing stable to plot")
    arms = list(dict.fromkeys(df.arm))
    colors = width_colors(df.width_mult)
    ncol = min(len(arms), 3)
    nrow = -(-len(arms) // ncol)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol + 0.4, 3.9 * nrow + 0.5), sharey=True,
                                 squeeze=False, constrained_layout=True)
        ylim = _ylim(df.loss.to_numpy(float))
        for ax, arm in zip(axes.flat, arms):
            _panel(ax, df[df.arm == arm], colors, ylim)
        for ax in axes.flat[len(arms):]:
            ax.set_visible(False)
        for ax in axes[:, 0]:
            ax.set_ylabel("final train loss")
        _legend(fig, df, colors)
        fig.suptitle(title or "Final loss vs base LR per width: does the optimum stay put?")
        return save(fig, df, save_to)


def _panel(ax: plt.Axes, d: pd.DataFrame, colors: dict, ylim: tuple[float, float]) -> None:
    top = ax.get_xaxis_transform()  # x in data, y in axes fraction: markers pinned to the top
    for i, (m, c) in enumerate(d.groupby("width_mult")):
        c, col = c.sort_values("lr"), colors[float(m)]
        ok = np.isfinite(c.loss) & ~c.get("blowup", False)  # a finite blow-up is unstable too
        row = 0.965 - 0.035 * i  # one row of markers per width, so that equal LRs do not hide each other
        ax.plot(c.lr[ok], c.loss[ok], "o-", color=col, ms=4, lw=1.6)
        ax.plot(c.lr[~ok], np.full((~ok).sum(), row), "x", color=col, ms=7, mew=2, transform=top)
        above = ok & (c.loss > ylim[1])
        ax.plot(c.lr[above], np.full(above.sum(), row), "^", color=col, ms=6, transform=top, mfc="none")
        o = c.iloc[0]
        if np.isfinite(o.opt_loss):
            claimed = bool(o.opt_claimed) and not o.opt_at_edge
            if claimed and np.isfinite(o.opt_lo) and np.isfinite(o.opt_hi):  # the optimum's 90% interval
                ax.errorbar(o.opt_lr, o.opt_loss, xerr=[[o.opt_lr - o.opt_lo], [o.opt_hi - o.opt_lr]], color=col,
                            lw=1.6, capsize=4, zorder=4)
            ax.plot(o.opt_lr, o.opt_loss, "*", ms=15, mec="k", mew=0.8, color=col, zorder=5,
                    mfc=col if claimed else "white")
    base = d[d.width_mult == d.width_mult.min()].transfer_lr.dropna()
    if len(base):
        ax.axvline(base.iloc[0], color="gray", ls=":", lw=1.3)
    r = d.iloc[0]
    finite = np.isfinite(r.per_doubling)
    moved = (f"{signed(r.per_doubling, 2)} octaves/doubling (90% CI {signed(r.per_doubling_lo, 2)}…"
             f"{signed(r.per_doubling_hi, 2)}): " if finite else "")
    ax.set_title(f"{ARM_LABELS.get(r.arm, r.arm)}\n{moved}{r.verdict}", fontsize=10)
    if d.lr.nunique() == 1:  # one LR: a range around it, not the singular one matplotlib warns about
        ax.set_xlim(d.lr.iloc[0] / 2, d.lr.iloc[0] * 2)
    ax.set(xscale="log", xlabel="base LR η (before width scaling)", ylim=ylim)
    _lr_ticks(ax, d.lr.unique())


def _lr_ticks(ax: plt.Axes, lrs: np.ndarray) -> None:
    """Ticks at the grid LRs (at most 7 labelled), as plain numbers."""
    lrs = np.sort(lrs)
    ticks = lrs[:: -(-len(lrs) // 7)]
    ax.set_xticks(ticks, [f"{t:.2g}" for t in ticks])
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())


def _legend(fig: plt.Figure, df: pd.DataFrame, colors: dict) -> None:
    widths = df.groupby("width_mult")["width"].first() if "width" in df else None
    handles = [Line2D([], [], color=c, marker="o", ms=4, label=width_label(m, None if widths is None else widths[m]))
               for m, c in colors.items()]
    handles += [Line2D([], [], ls="-", marker="*", ms=12, mfc="gray", mec="k", color="gray",
                       label="fitted optimum, 90% interval (hollow: none claimed)"),
                Line2D([], [], ls="none", marker="x", ms=7, mew=2, color="gray",
                       label="diverged / failed / blew up (top)"),
                Line2D([], [], ls="none", marker="^", ms=6, mfc="none", color="gray", label="above the axis"),
                Line2D([], [], color="gray", ls=":", label="best LR at smallest width")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, framealpha=0.85)  # below the panels, on no curve
