"""Per-layer alignment over training across widths: RRC decomposition (Figure 3), alignments at equal
hyperparameters (Figure 4) and every layer's alignment ratio halfway through (Figure 16)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lrtransfer.analysis import layer_order, representative_layer, with_progress
from lrtransfer.analysis.frames import drop_tail, in_phase, nearest_lr, same_lr, seed_mean
from lrtransfer.analysis.picks import base_best_lr
from lrtransfer.phases import Phase
from lrtransfer.plots.common import ARM_LABELS, STYLE, plain_log, positive, save, skip, width_colors, width_label

RRC_METRICS = {"relative_repr_change": "RRC ‖ΔY‖/‖Y‖", "alignment_ratio": "alignment ratio α_ΔW/α_W",
               "relative_update": "relative update ‖ΔW‖/‖W‖"}
FIGURE4_METRICS = {"weight_alignment": "weight alignment α_W", "update_alignment": "update alignment α_ΔW",
                 "alignment_ratio": "alignment ratio α_ΔW/α_W"}
KEYS = ["arm", "width_mult", "width", "lr", "step"]


def _covered_lr(a: pd.DataFrame, cells: list[str], target: float | None) -> float:
    """The LR with records in the most (``cells``) combinations, nearest to ``target`` among those."""
    cover = a.groupby("lr")[cells].apply(lambda g: len(g.drop_duplicates()))
    full = cover.index[cover == cover.max()]
    return nearest_lr(full, target) if target else float(np.sort(full)[len(full) // 2])


def rrc_data(results: pd.DataFrame | None, align: pd.DataFrame | None, lr: float | None = None,
             layer: str | None = None, arms=("standard", "independent"),
             best: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """Figure 3: RRC, alignment ratio and relative update over time for one layer, at the
    smallest and largest width of phase-2 runs of ``arms``, at one base LR (default: the LR best
    at the smallest width, or the recorded LR nearest to it)."""
    if align is None or align.empty:
        return skip("figure 3", "no alignment records")
    a = align[in_phase(align, 2) & align.arm.isin(arms)]
    if a.empty:
        return skip("figure 3", f"no phase-2 alignment records of arms {list(arms)}")
    a = a[a.width_mult.isin([a.width_mult.min(), a.width_mult.max()])]
    lr = _covered_lr(a, ["arm", "width_mult"], lr or base_best_lr(results, best=best))
    a = a[same_lr(a.lr, lr)]
    layer = layer or representative_layer(a)
    a = with_progress(a[a.layer == layer])
    df = drop_tail(seed_mean(a, KEYS + ["layer", "fan_in"], [*RRC_METRICS, "progress"]))
    order = {arm: i for i, arm in enumerate(arms)}
    return df.sort_values(["arm", "width_mult", "step"], key=lambda s: s.map(order) if s.name == "arm" else s,
                          ignore_index=True)


def plot_rrc(df: pd.DataFrame | None, save_to: Path) -> Path | None:
    """Figure 3: rows = arms, columns = RRC, alignment ratio, relative update (log y); one colour per width."""
    if df is None or df.empty:
        return skip(Path(save_to).stem, "no data")
    arms, colors = list(dict.fromkeys(df.arm)), width_colors(df.width_mult)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(arms), 3, figsize=(13, 3.5 * len(arms) + 0.6), sharex=True, sharey="col",
                                 squeeze=False, constrained_layout=True)
        for row, arm in zip(axes, arms):
            d = df[df.arm == arm]
            for m, g in d.groupby("width_mult"):
                label = width_label(m, g.width.iloc[0] if "width" in g else None) + f", fan-in {g.fan_in.iloc[0]}"
                for ax, metric in zip(row, RRC_METRICS):
                    ax.plot(g.step, positive(g[metric]), color=colors[float(m)], lw=1.6, label=label)
            row[0].set_ylabel(ARM_LABELS.get(arm, arm).replace(" (", "\n("))
            for ax, title in zip(row, RRC_METRICS.values()):
                ax.set(yscale="log", title=title)
            row[1].axhline(1.0, color="gray", ls=":", lw=1)
            plain_log(row[1])
        for ax in axes[-1]:
            ax.set_xlabel("step")
        axes[0, 0].legend()
        r = df.iloc[0]
        fig.suptitle(f"Relative representation change = alignment ratio × relative update (Eq 4): "
                     f"{r.layer}, base LR {r.lr:.3g}")
        return save(fig, df, save_to)


def dynamics_runs(align: pd.DataFrame | None, lr: float | None = None) -> pd.DataFrame | None:
    """Records of the ``dynamics`` runs at one LR (default: the smallest), plus their 1× partner:
    a dynamics run at width 1× if any, else the phase-2 ``standard`` run at 1× with the same LR."""
    if align is None or align.empty or "phase" not in align:
        return None
    d = align[in_phase(align, Phase.DYNAMICS)]
    if d.empty:
        return None
    d = d[same_lr(d.lr, nearest_lr(d.lr, lr) if lr else d.lr.min())]
    if not (d.width_mult == 1).any():
        partner = align[in_phase(align, Phase.TWO) & (align.arm == "standard") & (align.width_mult == 1)
                        & same_lr(align.lr, d.lr.iloc[0])]
        d = pd.concat([d, partner], ignore_index=True)
    return d


def alignment_data(results: pd.DataFrame | None, align: pd.DataFrame | None, lr: float | None = None,
                   layer: str | None = None) -> pd.DataFrame | None:
    """Figure 4: weight alignment, update alignment and their ratio over time for one layer in
    the dynamics runs (identical hyperparameters at every width; see `dynamics_runs`)."""
    runs = dynamics_runs(align, lr)
    if runs is None:
        return skip("figure 4", "no 'dynamics' runs with alignment records")
    layer = layer or representative_layer(runs)
    runs = with_progress(runs[runs.layer == layer])
    df = drop_tail(seed_mean(runs, ["width_mult", "width", "lr", "step", "layer", "fan_in"],
                             [*FIGURE4_METRICS, "progress"]))
    if df.width_mult.nunique() < 2:
        skip("figure 4", "only one width recorded: drawing it alone")
    return df


def plot_alignment(df: pd.DataFrame | None, save_to: Path) -> Path | None:
    """Figure 4: α_W, α_ΔW and α_ΔW/α_W over time (log y), one colour per width; dotted: 1/√C,
    the α_W of μP's assumption at initialisation (Eq 5)."""
    if df is None or df.empty:
        return skip(Path(save_to).stem, "no data")
    colors = width_colors(df.width_mult)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharex=True, constrained_layout=True)
        for m, g in df.groupby("width_mult"):
            label = width_label(m, g.width.iloc[0] if "width" in g else None) + f", fan-in {g.fan_in.iloc[0]}"
            for ax, metric in zip(axes, FIGURE4_METRICS):
                ax.plot(g.step, positive(g[metric]), color=colors[float(m)], lw=1.6, label=label)
            axes[0].axhline(g.fan_in.iloc[0] ** -0.5, color=colors[float(m)], ls=":", lw=1.2)
        for ax, title in zip(axes, FIGURE4_METRICS.values()):
            ax.set(yscale="log", title=title, xlabel="step")
            plain_log(ax)
        axes[2].axhline(1.0, color="gray", ls=":", lw=1)
        axes[0].plot([], [], color="gray", ls=":", label="1/√fan-in (random init)")
        axes[0].legend()
        r = df.iloc[0]
        fig.suptitle(f"Alignment at identical hyperparameters across widths (no μP): {r.layer}, LR {r.lr:.3g}")
        return save(fig, df, save_to)


def layer_alignment_data(results: pd.DataFrame | None, align: pd.DataFrame | None, at: float = 0.5,
                         lr: float | None = None, fallback_arm: str = "independent",
                         best: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """Figure 16: every layer's alignment ratio at the record nearest ``at`` of training, per width.

    From the dynamics runs (`dynamics_runs`), else from the phase-2 runs of ``fallback_arm`` at
    the LR best at the smallest width (or the recorded LR nearest to it). Columns: ``source,
    width_mult, [width,] lr, layer, layer_index`` (module order), ``role, fan_in, step,
    alignment_ratio`` (seed mean).
    """
    runs, source = dynamics_runs(align, lr), "dynamics runs"
    if runs is None and align is not None and not align.empty:
        runs = align[in_phase(align, 2) & (align.arm == fallback_arm)]
        if not runs.empty:
            runs = runs[same_lr(runs.lr, _covered_lr(runs, ["width_mult"], lr or base_best_lr(results, best=best)))]
        source = f"phase-2 {fallback_arm} runs"
    if runs is None or runs.empty:
        return skip("figure 16", "no dynamics runs and no phase-2 alignment records")
    runs = with_progress(runs)
    step = runs.groupby("width_mult")[["step", "progress"]].apply(
        lambda g: g.step.iloc[int(np.argmin(np.abs(g.progress.to_numpy() - at)))])
    runs = runs[runs.step == runs.width_mult.map(step)]
    df = seed_mean(runs, ["width_mult", "width", "lr", "layer", "role", "fan_in", "step"], ["alignment_ratio"])
    index = {name: i for i, name in enumerate(layer_order(runs))}
    df = df.assign(layer_index=df.layer.map(index), source=source)
    return df.sort_values(["width_mult", "layer_index"], ignore_index=True)


def plot_layer_alignment(df: pd.DataFrame | None, save_to: Path) -> Path | None:
    """Figure 16: alignment ratio (log y) vs layer index, one series per width; dotted line at 1."""
    if df is None or df.empty:
        return skip(Path(save_to).stem, "no data")
    colors = width_colors(df.width_mult)
    n = df.layer_index.max() + 1
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(max(7.0, min(16.0, 0.32 * n + 3)), 4.8), constrained_layout=True)
        for m, g in df.groupby("width_mult"):
            label = width_label(m, g.width.iloc[0] if "width" in g else None) + f", step {g.step.iloc[0]}"
            ax.plot(g.layer_index, positive(g.alignment_ratio), "o-", ms=4, lw=1, color=colors[float(m)], label=label)
        ax.axhline(1.0, color="gray", ls=":", lw=1)
        names = df.drop_duplicates("layer_index").sort_values("layer_index")
        if n <= 48:
            ax.set_xticks(names.layer_index, names.layer, rotation=90, fontsize=8)
        ax.set(yscale="log", xlabel="layer (module order)", ylabel="alignment ratio α_ΔW/α_W")
        plain_log(ax)
        ax.legend()
        ax.set_title(f"Alignment ratio of every layer halfway through training ({df.source.iloc[0]}, "
                     f"LR {df.lr.iloc[0]:.3g})")
        return save(fig, df, save_to)
