"""Runs that blew up without diverging: points of a loss-vs-LR curve far above their neighbours.

A run at too high an LR can end at a large but finite loss (6.5 on a curve whose minimum is 2.6)
without reaching NaN or ``run.max_loss``, and a run can end inside a loss spike. Fitted as ordinary
points they dominate the least squares: the noise estimate and the optimum's interval blow up with
them. `blowups` recognises them from the curve itself, so that they bound the fit window like a
divergence does.

Walking outward from the curve's minimum, point ``j`` with inner neighbour ``k`` is unstable when

* its rise ``y_j − y_k`` exceeds ``FACTOR`` times every other step between neighbours of the curve
  (inside ``j`` on its side, the whole run of finite points on the other; at least ``FLOOR`` of the
  curve's whole rise, so that noise on a flat stretch is not a scale), and
* it is a *spike* (its outer neighbour lies lower by as much), or a *blow-up*: its excess over the
  minimum exceeds ``LEVEL`` times the minimum's magnitude.

The second condition keeps the rise out of a plateau (flat, then rising) ordinary: there the first
rise is large against the plateau's steps, but small against the loss itself. Points beyond an
unstable one, on its side, are unstable too. A smooth curve's steps grow by at most ~4× from one
grid point to the next (an exponential high-LR side on a 2× grid), well below ``FACTOR``.
"""

from __future__ import annotations

import numpy as np

FACTOR = 10.0  # a rise this many times every other step of the curve is not part of its shape
FLOOR = 0.01  # steps are judged against at least this fraction of the curve's whole rise
LEVEL = 0.25  # a blow-up lies this fraction of the minimum's magnitude above it
MIN_STEPS = 2  # steps of the rest of the curve needed to call a rise at the end a blow-up (a spike: 1)


def blowups(y: np.ndarray) -> np.ndarray:
    """Mask of the finite points of ``y`` (sorted by LR; ``+inf``: unstable already) that blew up
    or spiked, and every finite point beyond them on their side of the minimum."""
    y = np.asarray(y, dtype=float)
    out = np.zeros(len(y), dtype=bool)
    finite = np.isfinite(y)
    if finite.sum() < 4:  # a minimum, a step to judge by, the point and the one beyond it
        return out
    i = int(np.argmin(np.where(finite, y, np.inf)))
    lo, hi = _run(finite, i)
    for step in (-1, 1):
        j = i + step
        while lo <= j <= hi:
            if _unstable(y, i, j, step, lo, hi):
                beyond = slice(j, hi + 1) if step > 0 else slice(lo, j + 1)
                out[beyond] = True
                break
            j += step
    return out


def _run(finite: np.ndarray, i: int) -> tuple[int, int]:
    """First and last index of the run of finite points around ``i``."""
    lo = hi = i
    while lo > 0 and finite[lo - 1]:
        lo -= 1
    while hi < len(finite) - 1 and finite[hi + 1]:
        hi += 1
    return lo, hi


def _unstable(y: np.ndarray, i: int, j: int, step: int, lo: int, hi: int) -> bool:
    """Whether point ``j`` (on the ``step`` side of the minimum ``i``) is a spike or a blow-up."""
    inner = j - step
    rise = y[j] - y[inner]
    rest = y[lo : inner + 1] if step > 0 else y[inner : hi + 1]  # the curve inside j, both sides
    steps = np.abs(np.diff(rest))
    if not len(steps):
        return False
    scale = max(steps.max(), FLOOR * (y[lo : hi + 1].max() - y[i]))  # a flat stretch's steps are noise
    if rise <= FACTOR * scale:
        return False
    outer = j + step
    spike = lo <= outer <= hi and y[j] - y[outer] > FACTOR * scale
    blowup = len(steps) >= MIN_STEPS and y[j] - y[i] > LEVEL * abs(y[i])
    return bool(spike or blowup)
