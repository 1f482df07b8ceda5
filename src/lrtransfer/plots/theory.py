"""Theory figures: the paper's Figure 7 (extra warmup factors) and Figure 15 (update alignment).

Each figure has a function that computes its numbers as a DataFrame and a plot function that
only draws a given DataFrame (``save_to``); ``write_theory_figures`` runs both and writes
``<name>.png`` with ``<name>.csv`` beside it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lrtransfer import schedules, theory
from lrtransfer.plots.common import save


def extra_warmup_data(
    total: int = 20_000,
    width_mult: float = 16,
    lr: float = 0.004,
    weight_decay: float = 0.1,
    warmup: float = 0.1,
    exp_length: float = 0.5,
) -> pd.DataFrame:
    """Figure 7 numbers: per-step multipliers of the base schedule and of the Eq 14/15 factors.

    Base: ``warmup_linear_decay(t, total, warmup)``. ``exp`` is Eq 14 with ``T_W = exp_length·total``;
    ``decay_away`` is Eq 15 along the base LRs ``lr × base``. Defaults are the paper's (m = 16,
    η = 0.004, λ = 0.1, 20,000 llama steps); they are kept in ``df.attrs``.
    """
    step = np.arange(total)
    base = schedules.warmup_linear_decay(step, total, warmup)
    exp = schedules.exp_warmup(step, width_mult, exp_length * total)
    decay_away = schedules.decay_away_warmup(lr * base, weight_decay, width_mult)
    df = pd.DataFrame(
        {"step": step, "base": base, "exp_factor": exp, "decay_away_factor": decay_away,
         "base_x_exp": base * exp, "base_x_decay_away": base * decay_away}
    )
    df.attrs.update(total=total, width_mult=width_mult, lr=lr, weight_decay=weight_decay,
                    warmup=warmup, exp_length=exp_length)
    return df


def plot_extra_warmup(df: pd.DataFrame, save_to: Path) -> Path:
    """Figure 7: LR multiplier vs step (left) and the extra factors alone on a log scale (right)."""
    a = df.attrs
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    left.plot(df.step, df.base, color="k", label="base: 10% warmup + linear decay")
    left.plot(df.step, df.base_x_exp, label="base × exp warmup (Eq 14)")
    left.plot(df.step, df.base_x_decay_away, label="base × decay-away (Eq 15)")
    left.set(xlabel="step", ylabel="LR multiplier", ylim=(0, 1.02))
    right.plot(df.step, df.exp_factor, color="C0", label="exp factor")
    right.plot(df.step, df.decay_away_factor, color="C1", label="decay-away factor")
    if "width_mult" in a:
        right.axhline(1 / a["width_mult"], color="gray", ls=":", label="1/m")
    right.set(xlabel="step", ylabel="extra warmup factor", yscale="log")
    for ax in (left, right):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    title = "Figure 7: extra warmup factors on a linear-decay schedule"
    if a:
        title += (f", {a['total']:,} steps, exp T_W = {a['exp_length']:.0%}"
                  f" (m = {a['width_mult']:g}, η = {a['lr']:g}, λ = {a['weight_decay']:g})")
    fig.suptitle(title, fontsize=10)
    return save(fig, df, save_to)


def update_alignment_data(
    widths: tuple[int, ...] = (256, 1024, 4096),
    phis: tuple[float, ...] = (0.0, 0.01, 1.0),
    batches: tuple[int, ...] = tuple(2**k for k in range(14)),
    simulate: tuple[int, ...] = tuple(4**k for k in range(7)),
    trial_fraction: float = 0.25,
    seed: int = 0,
) -> pd.DataFrame:
    """Figure 15 numbers: α_ΔW from Eq 27 and Eq 28 per (C, φ, B), plus Monte Carlo columns.

    ``sim_eq23`` (the Eq 23 estimate) and ``sim_mean`` (mean per-trial α) are filled for the
    batch sizes in ``simulate`` and NaN elsewhere, using ``trial_fraction × default_trials``
    draws (about 2% precision at the default 1/4, plenty for markers; the column ``trials``).
    """
    rows = []
    for c in widths:
        for phi in phis:
            for b in sorted(set(batches) | set(simulate)):
                trials = max(1, round(trial_fraction * theory.default_trials(c, b)))
                sim = theory.simulate_update_alignment(c, b, phi, trials, seed) if b in simulate else None
                rows.append({"C": c, "phi": phi, "B": b,
                             "eq27": theory.update_alignment(c, b, phi),
                             "eq28": theory.update_alignment_approx(c, b, phi),
                             "sim_eq23": sim.eq23 if sim else np.nan,
                             "sim_mean": sim.mean if sim else np.nan,
                             "trials": sim.trials if sim else 0})
    return pd.DataFrame(rows)


def plot_update_alignment(df: pd.DataFrame, save_to: Path) -> Path:
    """Figure 15: α_ΔW vs B (log-log), one panel per φ, one colour per C.

    Solid: Eq 27; dashed: Eq 28; markers: Monte Carlo Eq 23 estimate.
    """
    phis = sorted(df.phi.unique())
    fig, axes = plt.subplots(1, len(phis), figsize=(4 * len(phis), 3.8), sharey=True, constrained_layout=True)
    for ax, phi in zip(np.atleast_1d(axes), phis):
        for i, (c, d) in enumerate(df[df.phi == phi].groupby("C")):
            d = d.sort_values("B")
            ax.plot(d.B, d.eq27, color=f"C{i}", label=f"C = {c}")
            ax.plot(d.B, d.eq28, color=f"C{i}", ls="--", lw=1)
            ax.plot(d.B, d.sim_eq23, color=f"C{i}", ls="none", marker="o", ms=4)
        ax.set(xscale="log", yscale="log", xlabel="batch size B", title=f"φ = {phi:g}")
        ax.grid(alpha=0.3, which="both")
    first = np.atleast_1d(axes)[0]
    first.set_ylabel("update alignment α_ΔW")
    first.plot([], [], color="gray", label="Eq 27")
    first.plot([], [], color="gray", ls="--", lw=1, label="Eq 28 approx.")
    first.plot([], [], color="gray", ls="none", marker="o", ms=4, label="Monte Carlo (Eq 23)")
    first.legend(fontsize=8)
    fig.suptitle("Figure 15: predicted update alignment in the Appendix E noise model", fontsize=10)
    return save(fig, df, save_to)


def write_theory_figures(out: Path) -> list[Path]:
    """Write Figures 7 and 15 to ``out`` as PNG, each with its numbers as CSV; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data, plot in (
        ("figure7_extra_warmup", extra_warmup_data, plot_extra_warmup),
        ("figure15_update_alignment", update_alignment_data, plot_update_alignment),
    ):
        png = plot(data(), out / f"{name}.png")
        written += [png, png.with_suffix(".csv")]
    return written
