"""Row selections and averages that analysis and the figures share (one definition each)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrtransfer.phases import Phase


def in_phase(df: pd.DataFrame, phase: Phase | int | str) -> pd.Series:
    """Mask of rows in ``phase``, compared as text (``Phase.TWO`` == "2", and a frame of one's own
    may write it 2)."""
    return df["phase"].astype(str) == str(phase)


def seed_mean(df: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean over seeds (and duplicate plan rows of one run) per ``keys`` present in ``df``."""
    keys = [k for k in keys if k in df]
    return df.groupby(keys, dropna=False, sort=True)[metrics].mean().reset_index()


def nearest_lr(available, target: float) -> float:
    """The LR of ``available`` nearest to ``target`` in log space."""
    lrs = np.unique(np.asarray(list(available), dtype=float))
    return float(lrs[np.argmin(np.abs(np.log(lrs / target)))])


def same_lr(series: pd.Series, lr: float) -> pd.Series:
    """Mask of LRs equal to ``lr`` up to float round-off."""
    return np.isclose(series.astype(float), lr, rtol=1e-6, atol=0)


def drop_tail(df: pd.DataFrame, keep: float = 0.995) -> pd.DataFrame:
    """Drop the final 0.5% of each run, as the paper does (G.3.2: changes go to 0 with the LR)."""
    return df[df["progress"] <= keep] if "progress" in df else df
