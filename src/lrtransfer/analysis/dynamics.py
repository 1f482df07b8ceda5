"""Summaries of the alignment records (Eq 2, 4) and the Eq 38 warmup prediction of a pair of runs.

``align`` is the tidy frame of `lrtransfer.monitor` records with the plan columns
``config_hash, phase, arm, width_mult, lr, seed`` added (docs/study.md). A *run* is one
combination of the plan columns present; seeds are averaged after summarising each run.
``phase`` comes back as text ("2", "dynamics"), since it mixes numbers and names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from lrtransfer import theory

RUN_KEYS = ("config_hash", "phase", "arm", "width_mult", "lr", "seed")
GROUP_KEYS = ("phase", "arm", "width_mult", "lr")


def _keys(df: pd.DataFrame, keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if k in df]


def normalise(align: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``phase`` as text, so that 2 and "dynamics" sort and compare together."""
    return align.assign(phase=align["phase"].astype(str)) if "phase" in align else align.copy()


def layer_order(align: pd.DataFrame) -> list[str]:
    """Layer names in module order (the monitor writes each step's records in model order)."""
    return list(dict.fromkeys(align["layer"]))


def hidden_layers(align: pd.DataFrame) -> list[str]:
    """Layers with role ``hidden`` in module order; every layer when no record has that role."""
    hidden = align.loc[align["role"] == "hidden", "layer"] if "role" in align else pd.Series(dtype=str)
    return list(dict.fromkeys(hidden)) or layer_order(align)


def representative_layer(align: pd.DataFrame) -> str:
    """The paper's kind of layer (``layers.13.feed_forward.w1``): a hidden MLP input in the middle.

    llama: ``layers.{L//2}.feed_forward.w1`` for L blocks; otherwise the middle hidden layer
    (index ``n//2`` of the hidden layers in module order).
    """
    names = layer_order(align)
    if not names:
        raise ValueError("align: has no records")
    blocks = [int(m.group(1)) for n in names if (m := re.fullmatch(r"layers\.(\d+)\.feed_forward\.w1", n))]
    if blocks:
        pick = f"layers.{(max(blocks) + 1) // 2}.feed_forward.w1"
        if pick in names:
            return pick
    hidden = hidden_layers(align)
    return hidden[len(hidden) // 2]


def with_progress(align: pd.DataFrame) -> pd.DataFrame:
    """Add ``progress = step / run length`` per run; length = last step + the measuring interval."""
    run = _keys(align, RUN_KEYS)

    def length(steps: pd.Series) -> float:
        u = np.unique(steps)
        return float(u[-1] + (np.median(np.diff(u)) if len(u) > 1 else 1))

    total = align.groupby(run, dropna=False)["step"].transform(length) if run else length(align["step"])
    return align.assign(progress=align["step"] / total)


def per_step(align: pd.DataFrame, metrics: tuple[str, ...], layer: str | None = None) -> pd.DataFrame:
    """Per run and step: each metric for ``layer``, or its median over the hidden layers (``None``)."""
    df = align[align["layer"] == layer] if layer is not None else align[align["layer"].isin(hidden_layers(align))]
    keys = _keys(df, RUN_KEYS) + ["step"]
    out = df.groupby(keys, dropna=False)[list(metrics)].median().reset_index()
    return with_progress(out)


def _seed_mean(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return df.groupby(_keys(df, GROUP_KEYS), dropna=False)[columns].mean().reset_index()


def _start_mid(steps: pd.DataFrame, at: float) -> pd.DataFrame:
    """Per run: the alignment ratio at the first step and at the step whose progress is nearest ``at``."""
    run, rows = _keys(steps, RUN_KEYS), []
    for key, g in steps.groupby(run, dropna=False, sort=True):
        g = g.sort_values("step")
        mid = g.iloc[int(np.argmin(np.abs(g.progress.to_numpy() - at)))]
        rows.append({**dict(zip(run, key)), "start": g.alignment_ratio.iloc[0], "mid": mid.alignment_ratio,
                     "step_start": g.step.iloc[0], "step_mid": mid.step})
    return pd.DataFrame(rows, columns=[*run, "start", "mid", "step_start", "step_mid"])


def alignment_summary(align: pd.DataFrame, layer: str | None = None, at: float = 0.5) -> pd.DataFrame:
    """Alignment ratio (Eq 4) at the first measured step vs the record nearest ``at`` of the run.

    Per (phase, arm, width_mult, lr), mean over seeds: ``hidden_start, hidden_mid`` (median over
    hidden layers) and ``layer_start, layer_mid`` for ``layer`` (default
    ``representative_layer(align)``; NaN in runs without it), with ``step_start, step_mid``
    (of the hidden median) and the chosen ``layer``.
    """
    df = normalise(align)
    layer = layer or representative_layer(df)
    hidden = _start_mid(per_step(df, ("alignment_ratio",)), at)
    one = _start_mid(per_step(df, ("alignment_ratio",), layer), at)
    run = _keys(hidden, RUN_KEYS)
    wide = hidden.rename(columns={"start": "hidden_start", "mid": "hidden_mid"}).merge(
        one[[*run, "start", "mid"]].rename(columns={"start": "layer_start", "mid": "layer_mid"}), on=run, how="left")
    cols = ["hidden_start", "hidden_mid", "layer_start", "layer_mid", "step_start", "step_mid"]
    return _seed_mean(wide, cols).assign(layer=layer)


def rrc_summary(align: pd.DataFrame, layer: str | None = None,
                window: tuple[float, float] = (0.25, 0.75)) -> pd.DataFrame:
    """Mean RRC ``‖ΔY‖/‖Y‖``, relative update ``‖ΔW‖/‖W‖`` and alignment ratio over the middle
    50% of training (``window`` of the run's progress), per (phase, arm, width_mult, lr).

    Per step the median over hidden layers (or the value of ``layer``), then the mean over the
    window's steps, then over seeds. Eq 4: RRC = alignment ratio × relative update per step.
    """
    metrics = ("relative_repr_change", "relative_update", "alignment_ratio")
    steps = per_step(normalise(align), metrics, layer)
    steps = steps[(steps.progress >= window[0]) & (steps.progress <= window[1])]
    run = _keys(steps, RUN_KEYS)
    per_run = steps.groupby(run, dropna=False)[list(metrics)].mean().reset_index()
    return _seed_mean(per_run, list(metrics))


# --- Eq 38 with the simple RMS model (Eq 30) along the actual per-step LRs ----------------------


def layer_lrs(config: Mapping | object, role: str = "hidden") -> tuple[np.ndarray, float]:
    """Absolute per-step LR ``η_t`` and weight decay λ of a parameter with ``role`` in a run.

    ``config`` is a resolved `RunConfig` or its dict. ``η_t`` = group LR (``optim.lr`` over the
    ``lr_scaling`` divisor for hidden/output, else ``fixed_lr``) × the schedule multiplier
    (`training.setup.lr_multipliers`); λ follows ``wd_scaling`` and ``no_decay`` as in
    `lrtransfer.scaling`.
    """
    from lrtransfer.config import RunConfig, validate
    from lrtransfer.models import width_mult
    from lrtransfer.scaling import role_hyperparams
    from lrtransfer.training.setup import lr_multipliers

    cfg = config if isinstance(config, RunConfig) else validate(dict(config))
    oc, m = cfg.optim, width_mult(cfg.model)
    lr, wd, _ = role_hyperparams(role, m, lr=oc.lr, weight_decay=oc.weight_decay, lr_scaling=oc.lr_scaling,
                                 wd_scaling=oc.wd_scaling, fixed_lr=oc.fixed_lr, no_decay=oc.no_decay)
    return lr * lr_multipliers(cfg.schedule, cfg.run.steps, oc, m), wd


def warmup_ratio_prediction(scaled: tuple[np.ndarray, float], base: tuple[np.ndarray, float],
                            rho0: float) -> np.ndarray:
    """Eq 38 ``s_t = (η̂_t/ρ̂_t)/(η_t/ρ_t)`` with both ρ from Eq 30 (`theory.rms_trajectory`).

    ``scaled`` and ``base`` are ``(per-step LRs, weight decay)`` of the two runs, e.g. μP with
    independent WD ``(η/m, mλ)`` and no μP ``(η, λ)``; ``rho0`` the layer's initial RMS (both
    runs). For constant LRs this is Eq 39 (`theory.warmup_effect`). NaN where ``η_t = 0``.
    """
    n = min(len(scaled[0]), len(base[0]))
    num = theory.relative_update(np.asarray(scaled[0][:n], float), scaled[1], rho0)
    den = theory.relative_update(np.asarray(base[0][:n], float), base[1], rho0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)
