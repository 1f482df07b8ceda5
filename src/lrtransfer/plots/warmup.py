"""Figure 5: μP with independent WD, (η/m, mλ), acts like an extra warmup over (η, λ) (Eq 38, 39)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lrtransfer.analysis import layer_lrs, representative_layer, warmup_ratio_prediction, with_progress
from lrtransfer.analysis.frames import drop_tail, in_phase, same_lr, seed_mean
from lrtransfer.analysis.picks import figure5_lrs
from lrtransfer.phases import Phase
from lrtransfer.plots.common import STYLE, log, plain_log, positive, save, skip

Schedule = tuple[np.ndarray, float]  # (per-step LR of the layer, its weight decay)


def _config(results: pd.DataFrame | None, config_hash: str) -> dict | None:
    """The resolved config dict of a run, from the ``config`` column of ``results``."""
    if results is None or "config" not in results or "config_hash" not in results:
        return None
    found = results.loc[results.config_hash == config_hash, "config"].dropna()
    if found.empty:
        return None
    cfg = found.iloc[0]
    return json.loads(cfg) if isinstance(cfg, str) else dict(cfg)


def _schedule(results, runs: pd.DataFrame, role: str) -> Schedule | None:
    """The layer's per-step LRs and weight decay, when the run's config gives its length."""
    cfg = _config(results, runs.config_hash.iloc[0]) if "config_hash" in runs else None
    lrs, wd = layer_lrs(cfg, role) if cfg is not None else (None, None)
    return None if lrs is None else (lrs, wd)


def _pair(results: pd.DataFrame | None, align: pd.DataFrame | None, lr: float | None = None,
          best: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame] | str:
    """Records of the Figure 5 pair at the widest width m (Appendix G.3.4): the standard run best
    there (``lr`` overrides it), hidden layers (η/m, λ), and the independent run with the same
    LR-WD product (base LR η/m), hidden layers (η/m², mλ); or why there are none."""
    if align is None or align.empty or "phase" not in align:
        return "no alignment records"
    picked = figure5_lrs(results, best) if results is not None and not results.empty else None
    if picked is None:
        return "no finished phase-2 standard run"
    m, lr_standard, lr_independent = picked
    if lr is not None:
        lr_standard, lr_independent = lr, lr / m
    wide = align[(align.width_mult == m) & (in_phase(align, Phase.TWO) | in_phase(align, Phase.DYNAMICS))]
    wide = wide.drop_duplicates(["config_hash", "step", "layer"]) if "config_hash" in wide else wide
    base = wide[(wide.arm == "standard") & same_lr(wide.lr, lr_standard)]
    scaled = wide[(wide.arm == "independent") & same_lr(wide.lr, lr_independent)]
    if base.empty:
        return f"no standard run with alignment records at {m:g}× and base LR {lr_standard:.3g}"
    if scaled.empty:
        return f"no independent run at {m:g}× with base LR {lr_independent:.3g} (the dynamics stage plans it)"
    return base, scaled


def warmup_effect_data(results: pd.DataFrame | None, align: pd.DataFrame | None, layer: str | None = None,
                       lr: float | None = None, scaled: Schedule | None = None,
                       base: Schedule | None = None, best: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """Relative update and RRC of (η/m, mλ) vs (η, λ) at one width, their ratio, and Eq 38.

    The pair of Appendix G.3.4 (`_pair`): ``base`` the standard run best at the widest width,
    ``scaled`` the independent run with the same LR-WD product, both with the same frozen LR of
    input, gain and bias parameters. The prediction ``ratio_predicted`` is Eq 38 along both
    runs' actual per-step LRs of the layer (Eq 30, whole steps with their decay term, as the
    measured ΔW; ρ0 = 1/√fan_in: the init RMS of N(0, 1/fan_in)); pass ``scaled``/``base`` as
    ``(lrs, weight_decay)``, else they come from the runs' ``config`` in ``results`` (NaN when
    neither is there). ``best``: the results' `best_lrs`, when already computed.
    """
    pair = _pair(results, align, lr, best)
    if isinstance(pair, str):
        return skip("figure 5", pair)
    dyn, hat = pair
    layer = layer or representative_layer(dyn)
    dyn, hat = dyn[dyn.layer == layer], hat[hat.layer == layer]
    names = {"relative_update": "rel_update", "relative_repr_change": "rrc"}
    df = seed_mean(with_progress(dyn), ["step"], [*names, "progress"]).rename(
        columns={k: f"{v}_base" for k, v in names.items()}).merge(
        seed_mean(hat, ["step"], list(names)).rename(columns={k: f"{v}_scaled" for k, v in names.items()}), on="step")
    if df.empty:
        return skip("figure 5", f"layer {layer!r} has no common steps in the two runs")
    df["ratio_measured"] = df.rel_update_scaled / df.rel_update_base
    fan_in, role = int(dyn.fan_in.iloc[0]), str(dyn.role.iloc[0]) if "role" in dyn else "hidden"
    scaled = scaled or _schedule(results, hat, role)
    base = base or _schedule(results, dyn, role)
    df["ratio_predicted"] = _predicted(df.step.to_numpy(int), scaled, base, fan_in**-0.5)
    df = drop_tail(df).assign(layer=layer, fan_in=fan_in, width_mult=dyn.width_mult.iloc[0],
                              lr_base=float(dyn.lr.iloc[0]), lr_scaled=float(hat.lr.iloc[0]))
    return df.reset_index(drop=True)


def _predicted(steps: np.ndarray, scaled: Schedule | None, base: Schedule | None, rho0: float) -> np.ndarray:
    """Eq 38 at the measured steps (NaN without both schedules or past their end)."""
    out = np.full(len(steps), np.nan)
    if scaled is None or base is None:
        log.info("figure 5: no run configs with a known length, so no Eq 38 prediction")
        return out
    s = warmup_ratio_prediction(scaled, base, rho0)
    ok = steps < len(s)
    out[ok] = s[steps[ok]]
    return out


def plot_warmup_effect(df: pd.DataFrame | None, save_to: Path) -> Path | None:
    """Relative update (left) and RRC (middle) of both runs; right: their ratio, measured and
    predicted (Eq 38 via Eq 30), between 1/m and 1."""
    if df is None or df.empty:
        return skip(Path(save_to).stem, "no data")
    r = df.iloc[0]
    labels = {"base": f"μP + standard WD, base LR {r.lr_base:.3g}: hidden (η, λ), η = base/m",
              "scaled": f"μP + independent WD, base LR {r.lr_scaled:.3g}: hidden (η/m, mλ)"}
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharex=True, constrained_layout=True)
        for run, color in (("base", "C0"), ("scaled", "C1")):
            axes[0].plot(df.step, positive(df[f"rel_update_{run}"]), color=color, lw=1.6, label=labels[run])
            axes[1].plot(df.step, positive(df[f"rrc_{run}"]), color=color, lw=1.6, label=labels[run])
        axes[2].plot(df.step, positive(df.ratio_measured), color="C2", lw=1.6, label="measured")
        if df.ratio_predicted.notna().any():
            axes[2].plot(df.step, positive(df.ratio_predicted), "k--", lw=1.4, label="predicted: Eq 38 with Eq 30")
        axes[2].axhline(1 / r.width_mult, color="gray", ls=":", lw=1, label=f"1/m = 1/{r.width_mult:g}")
        axes[2].axhline(1.0, color="gray", ls="-", lw=0.8)
        titles = ("relative update ‖ΔW‖/‖W‖", "RRC ‖ΔY‖/‖Y‖",
                  "ratio of relative updates s_t (scaled / base)")
        for ax, title in zip(axes, titles):
            ax.set(yscale="log", title=title, xlabel="step")
            ax.legend(fontsize=8.5)
        plain_log(axes[2])
        fig.suptitle(f"μP with independent WD acts as an extra warmup: {r.layer} (fan-in {r.fan_in}) "
                     f"at {r.width_mult:g}×")
        return save(fig, df, save_to)
