"""Two models of a loss curve near its minimum, in u = log2(LR) − x_ref, fitted jointly over an arm's widths.

Each width keeps its own level, curvature and optimum; one shape parameter, which lets the curve be
steeper on one side of its minimum than on the other, is shared by the arm's widths (a separate one
per width costs too much precision with one seed). Both fit many columns of y at once (bootstrap
draws), each column with its own weights (seeds per LR; 0 leaves a point out), and hold a width's
parameters as an array ``(4, columns)``.

* `Cubic`: ``y = c + b·u + a·u² + d·u³`` with ``d`` shared — linear least squares. Translating a
  cubic leaves ``d`` unchanged, so sharing it does not tie the widths' optima together.
* `TwoSided`: ``y = c + a·s·(u − v)²`` with ``s = r`` below the optimum ``v`` and 1 above, the
  low/high curvature ratio ``r`` shared — profiled over a grid of ``r`` (``RATIOS``) and of ``v``
  (``GRID_STEP``), then ``v`` refined by golden section; ``(c, a >= 0)`` in closed form for each.

The shared term is dropped (``d = 0``, ``r = 1``) when the windows leave fewer than 2 points beyond
3 per width to determine it.
"""

from __future__ import annotations

import numpy as np

RATIOS = np.exp(np.linspace(np.log(1 / 6), np.log(6), 17))  # TwoSided's r grid; r = 1 is on it
GRID_STEP = 0.25  # octaves: TwoSided's grid of v, refined by golden section
CANDIDATES = 3  # ratios r refined per bootstrap draw
GOLDEN = (np.sqrt(5) - 1) / 2


def shared(us: list[np.ndarray]) -> bool:
    """Whether the windows ``us`` determine the shared shape term."""
    return sum(len(u) - 3 for u in us) >= 2


class Cubic:
    """``c + b·u + a·u² + d·u³`` per width, ``d`` shared; parameters ``(c, b, a, d)``."""

    name = "cubic"

    @staticmethod
    def fit(us: list[np.ndarray], ws: list[np.ndarray], ys: list[np.ndarray]) -> list[np.ndarray]:
        """Weighted least squares of every column of ``ys`` with the weights of ``ws`` (each points
        x columns); one solve per distinct column of weights."""
        cubic = shared(us)
        blocks = []
        for m, u in enumerate(us):
            block = np.zeros((len(u), 3 * len(us) + cubic))
            block[:, 3 * m : 3 * m + 3] = np.vander(u, 3, increasing=True)
            if cubic:
                block[:, -1] = u**3
            blocks.append(block)
        x, w, y = np.vstack(blocks), np.vstack(ws), np.vstack(ys)
        patterns, which = np.unique(w.T, axis=0, return_inverse=True)
        coef = np.empty((x.shape[1], y.shape[1]))
        for k, pattern in enumerate(patterns):
            cols, sw = which.ravel() == k, np.sqrt(pattern)[:, None]
            coef[:, cols] = np.linalg.lstsq(x * sw, y[:, cols] * sw, rcond=None)[0]
        d = coef[-1] if cubic else np.zeros(coef.shape[1])
        return [np.vstack([coef[3 * m : 3 * m + 3], d[None]]) for m in range(len(us))]

    @staticmethod
    def predict(p: np.ndarray, u) -> np.ndarray:
        c, b, a, d = p
        return c + u * (b + u * (a + u * d))

    @staticmethod
    def minimum(p: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray]:
        """Lowest point ``(u, f)`` on ``[lo, hi]``: the local minimum ``u = −b / (a + √(a² − 3bd))``
        (the root of f' where f'' > 0) when it lies inside, else the lower end."""
        c, b, a, d = p
        lo, hi = np.broadcast_to(lo, c.shape), np.broadcast_to(hi, c.shape)
        disc = a * a - 3 * b * d
        den = a + np.sqrt(np.maximum(disc, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where((disc >= 0) & (den > 0), -b / den, np.nan)
        cand = np.stack([np.where((u >= lo) & (u <= hi), u, lo), lo, hi])
        f = Cubic.predict(p[:, None], cand)
        k = np.argmin(f, axis=0)[None]
        return np.take_along_axis(cand, k, 0)[0], np.take_along_axis(f, k, 0)[0]


class TwoSided:
    """``c + a·s·(u − v)²``, ``s = r`` below ``v``, 1 above, ``r`` shared; parameters ``(c, a, v, r)``."""

    name = "two-sided"

    @staticmethod
    def fit(us: list[np.ndarray], ws: list[np.ndarray], ys: list[np.ndarray]) -> list[np.ndarray]:
        """Weighted least squares of every column of ``ys`` (weights ``ws``, each points x columns):
        for every ``r`` the best ``v`` on the grid, refined by a few golden-section steps within a
        grid step (and the column's first and last weighted point); then the ``CANDIDATES`` best
        ``r`` refined fully (every ``r`` for a single column, a point fit, so that a curve of this
        shape is recovered exactly), keeping the best."""
        rs = RATIOS if shared(us) else np.ones(1)
        columns = ys[0].shape[1]
        starts = []
        for u, w, y in zip(us, ws, ys):
            vs = np.linspace(u[0], u[-1], int(np.ceil((u[-1] - u[0]) / GRID_STEP)) + 1)
            starts.append(vs[_grid_rss(u, w, y, rs, vs).argmin(axis=1)])  # r x columns
        every = np.broadcast_to(np.arange(len(rs))[:, None], (len(rs), columns))
        rss = _refine(us, ws, ys, starts, rs, every, iters=6)[1]
        keep = len(rs) if columns == 1 else min(CANDIDATES, len(rs))
        top = np.argsort(rss, axis=0)[:keep]  # candidates x columns
        fits, rss = _refine(us, ws, ys, starts, rs, top, iters=60 if columns == 1 else 15)
        best = np.argmin(rss, axis=0) * columns + np.arange(columns)
        return [f[:, best] for f in fits]

    @staticmethod
    def predict(p: np.ndarray, u) -> np.ndarray:
        c, a, v, r = p
        return c + a * two_sided_basis(u, v, r)

    @staticmethod
    def minimum(p: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray]:
        """``v`` (clipped to ``[lo, hi]``; the fit keeps it inside its window) and the loss there."""
        u = np.clip(p[2], lo, hi)
        return u, TwoSided.predict(p, u)


def two_sided_basis(u, v, r) -> np.ndarray:
    """``s·(u − v)²`` with ``s = r`` below the optimum ``v`` and 1 above: `TwoSided`'s shape (broadcasts)."""
    return np.where(u < v, r, 1.0) * (u - v) ** 2


def _ends(u: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the first and last ``u`` with weight."""
    on = w > 0
    return u[on.argmax(axis=0)], u[len(u) - 1 - on[::-1].argmax(axis=0)]


def _centred(w: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights normalised per column and ``y`` minus its weighted mean."""
    wn = w / w.sum(axis=0)
    return wn, y - (wn * y).sum(axis=0)


def _grid_rss(u, w, y, rs, vs) -> np.ndarray:
    """Residual sum of squares (weights ``w``) of the best ``(c, a >= 0)`` at each ``(r, v)`` of the
    grid, per column: ``len(rs) x len(vs) x columns``."""
    g = two_sided_basis(u, vs[:, None], rs[:, None, None])  # r x v x points
    wn, yc = _centred(w, y)
    # einsum, not BLAS: these products are small, and a threaded BLAS only contends on a busy machine
    gm = np.einsum("rvp,pb->rvb", g, wn)
    var = np.einsum("rvp,pb->rvb", g * g, wn) - gm**2
    cov = np.einsum("rvp,pb->rvb", g, wn * yc)
    with np.errstate(divide="ignore", invalid="ignore"):
        explained = np.where((cov > 0) & (var > 0), cov**2 / var, 0.0)
    return w.sum(axis=0) * ((wn * yc**2).sum(axis=0) - explained)


def _refine(us, ws, ys, starts, rs, which: np.ndarray, iters: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Golden-section refinement of ``v`` from the grid ``starts`` (r x columns per width) at the
    ratios ``rs[which]`` (k x columns); per width the parameters (4 x k·columns) and the total
    residual sum of squares (k x columns)."""
    columns = ys[0].shape[1]
    cols, r = np.broadcast_to(np.arange(columns), which.shape).ravel(), rs[which].ravel()
    fits, rss = [], 0.0
    for u, w, y, v0 in zip(us, ws, ys, starts):
        lo, hi = _ends(u, w[:, cols])
        step = GRID_STEP if len(u) > 1 else 0.0
        start = v0[which.ravel(), cols]
        wn, yc = _centred(w[:, cols], y[:, cols])
        v = _golden(u, wn, yc, r, np.maximum(start - step, lo), np.minimum(start + step, hi), iters)
        p = np.vstack([*_level_and_curvature(u, wn, y[:, cols], r, v), v, r])
        fits.append(p)
        rss = rss + (w[:, cols] * (y[:, cols] - TwoSided.predict(p, u[:, None])) ** 2).sum(0)
    return fits, rss.reshape(which.shape)


def _level_and_curvature(u, wn, y, r, v) -> tuple[np.ndarray, np.ndarray]:
    """Best ``(c, a >= 0)`` per column at given ``r, v`` (regression on s·(u − v)², weights ``wn``)."""
    g = two_sided_basis(u[:, None], v, r)
    gm, ym = (wn * g).sum(0), (wn * y).sum(0)
    var = (wn * (g - gm) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.maximum(np.where(var > 0, (wn * (g - gm) * (y - ym)).sum(0) / var, 0.0), 0.0)
    return ym - a * gm, a


def _golden(u, wn, yc, r, lo, hi, iters: int) -> np.ndarray:
    """Per column, the ``v`` in ``[lo, hi]`` of least residual (golden-section search, one new
    evaluation per step; ``wn, yc`` from `_centred`)."""
    rss = lambda v: _rss_at(u, wn, yc, r, v)  # noqa: E731
    a, b = lo.copy(), hi.copy()
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = rss(c), rss(d)
    for _ in range(iters):
        left = fc <= fd  # the minimum lies in [a, d]: c becomes the new d
        a, b = np.where(left, a, c), np.where(left, d, b)
        new = np.where(left, b - GOLDEN * (b - a), a + GOLDEN * (b - a))
        fnew = rss(new)
        c, fc, d, fd = (np.where(left, new, d), np.where(left, fnew, fd), np.where(left, c, new),
                        np.where(left, fc, fnew))
    return (a + b) / 2


def _rss_at(u, wn, yc, r, v) -> np.ndarray:
    """Residual sum of squares per column (relative to its total weight) of the best ``(c, a >= 0)``
    at that column's ``r, v``."""
    g = two_sided_basis(u[:, None], v, r)
    gm = (wn * g).sum(0)
    var, cov = (wn * g * g).sum(0) - gm**2, (wn * g * yc).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where((cov > 0) & (var > 0), cov / var, 0.0)
    return (wn * (yc - a * (g - gm)) ** 2).sum(0)  # the residuals themselves: no cancellation near the minimum
