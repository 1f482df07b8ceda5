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
from lrtransfer.config import ObjectiveConfig, RunConfig, validate

RUN_KEYS = ("config_hash", "phase", "arm", "width_mult", "lr", "seed")


def _keys(df: pd.DataFrame, keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if k in df]


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


# --- Eq 38 with the simple RMS model (Eq 30) along the actual per-step LRs ----------------------


def layer_lrs(config: Mapping | object, role: str = "hidden") -> tuple[np.ndarray, float]:
    """Absolute per-step LR ``η_t`` and weight decay λ of a parameter with ``role`` in a run.

    ``config`` is a resolved `RunConfig` or its dict. ``η_t`` = the role's group LR and λ
    (`OptimConfig.hyperparams`, Eq 6-8) × the schedule multiplier the run trained with
    (`RunConfig.lr_multipliers`); ``η_t`` is None for a user objective of unknown length.
    """
    cfg = config if isinstance(config, (RunConfig, ObjectiveConfig)) else validate(dict(config))
    lr, wd = cfg.optim.hyperparams(role, cfg.model.width_mult)
    multipliers = cfg.lr_multipliers()
    return (None if multipliers is None else lr * multipliers), wd


def warmup_ratio_prediction(scaled: tuple[np.ndarray, float], base: tuple[np.ndarray, float],
                            rho0: float) -> np.ndarray:
    """Eq 38 ``s_t = (η̂_t/ρ̂_t)/(η_t/ρ_t)`` with both ρ from Eq 30 (`theory.rms_trajectory`).

    ``scaled`` and ``base`` are ``(per-step LRs, weight decay)`` of the two runs, e.g. μP with
    independent WD ``(η/m, mλ)`` and no μP ``(η, λ)``; ``rho0`` the layer's initial RMS (both
    runs). For constant LRs this is Eq 39 (`theory.warmup_effect`). NaN where ``η_t = 0``.
    Both relative updates count the whole step, weight decay included (``include_decay``), as the
    measured ΔW of the ratio it is compared with does; with λ = 1 the decay term is not negligible.
    """
    n = min(len(scaled[0]), len(base[0]))
    num = theory.relative_update(np.asarray(scaled[0][:n], float), scaled[1], rho0, include_decay=True)
    den = theory.relative_update(np.asarray(base[0][:n], float), base[1], rho0, include_decay=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)
