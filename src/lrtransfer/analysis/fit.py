"""The optimum of each loss-vs-LR curve of an arm, with a 90% interval, from one joint fit.

Each width's curve of seed-mean loss against ``x = log2(LR)`` is fitted over a `window` of up to 7
finite points around its minimum (an unstable point, loss ``+inf``, bounds the window) by

    y_m(u) = c_m + b_m·u + a_m·u² + d·u³,   u = x − x_ref,

weighted by the number of seeds. The cubic term lets a curve be steeper on one side of its minimum
than on the other; it is shared by the arm's widths (translating a cubic leaves its ``u³``
coefficient unchanged, so each width keeps its own optimum and curvature) because one cubic term per
width costs too much precision with one seed: on the synthetic benchmark (`bench/verdict_benchmark.py`)
a separate cubic per width leaves 46–76% of one-seed sweeps decisive, the shared one 87–100%.
The optimum is the lowest point of the fitted cubic on the window: its local minimum when that lies
inside (``interior``), else a window end.

The interval is a parametric bootstrap: draws ``ŷ + σ_b/√n·z`` refitted. σ, the loss std of one seed,
is the larger of two pooled estimates (so a misfit of the model widens the interval instead of
hiding in the seed spread): the fit's residuals and the spread between seeds at the same LR; each
draw scales it by ``√(ν/χ²_ν)`` (ν: its degrees of freedom), the bootstrap form of a Student t.
With fewer than 2 degrees of freedom (e.g. 3-point windows, one seed) σ is the ``noise`` prior.
Each draw also drops one end point of a window at random (keeping >= 5 points), so the interval
counts how much the optimum depends on which points were fitted, the main error when the model
does not match the curve's shape.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

NOISE = 0.008  # loss std of one seed on the byte-level LM (shared/notes/pilot-lm-cpu.md, pilot 2)
DRAWS = 1000
MAX_POINTS, MIN_POINTS = 7, 5
LEVEL = 0.90


@dataclass(frozen=True)
class Curve:
    """One width's curve: ``x = log2(LR)`` increasing, seed-mean loss ``y`` (``+inf``: unstable),
    seeds per LR ``n`` and the std over seeds ``sd`` (ddof 0; NaN with one seed)."""

    x: np.ndarray
    y: np.ndarray
    n: np.ndarray
    sd: np.ndarray


@dataclass(frozen=True)
class ArmFit:
    """`fit_arm`'s answer: one dict per curve (see `fit_arm`), the bootstrap draws of each curve's
    optimum in log2 LR (curves x draws; NaN rows for curves with nothing stable) and the noise used."""

    rows: list[dict]
    draws: np.ndarray
    noise: float
    noise_source: str


def window(y: np.ndarray, max_points: int = MAX_POINTS) -> slice:
    """The finite points around the minimum of ``y``: at most ``max_points``, centred on the argmin
    as far as the run of finite points around it allows."""
    finite = np.isfinite(y)
    i = int(np.argmin(np.where(finite, y, np.inf)))
    lo = hi = i
    while lo > 0 and finite[lo - 1]:
        lo -= 1
    while hi < len(y) - 1 and finite[hi + 1]:
        hi += 1
    start = min(max(lo, i - max_points // 2), max(lo, hi - max_points + 1))
    return slice(start, min(hi, start + max_points - 1) + 1)


def cubic_min(coef: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lowest point ``(u, f, interior)`` of ``c + b·u + a·u² + d·u³`` on ``[lo, hi]`` per column of
    ``coef = (c, b, a, d)``: the local minimum ``u = −b / (a + √(a² − 3bd))`` (the root of f' with
    f'' > 0) when it lies inside, else the lower of the two ends."""
    c, b, a, d = coef
    lo, hi = np.broadcast_to(lo, c.shape), np.broadcast_to(hi, c.shape)
    disc = a * a - 3 * b * d
    den = a + np.sqrt(np.maximum(disc, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where((disc >= 0) & (den > 0), -b / den, np.nan)
    inside = (u >= lo) & (u <= hi)
    cand = np.stack([np.where(inside, u, lo), lo, hi])
    f = c + cand * (b + cand * (a + cand * d))
    k = np.argmin(f, axis=0)
    pick = np.take_along_axis(cand, k[None], 0)[0], np.take_along_axis(f, k[None], 0)[0]
    return pick[0], pick[1], inside & (k == 0)


def _design(us: list[np.ndarray], cubic: bool) -> np.ndarray:
    """Block design: ``[1, u, u²]`` for each width, plus one shared ``u³`` column."""
    blocks = []
    for m, u in enumerate(us):
        block = np.zeros((len(u), 3 * len(us) + cubic))
        block[:, 3 * m : 3 * m + 3] = np.vander(u, 3, increasing=True)
        if cubic:
            block[:, -1] = u**3
        blocks.append(block)
    return np.vstack(blocks)


def _solve(us: list[np.ndarray], ns: list[np.ndarray], ys: list[np.ndarray], cubic: bool) -> list[np.ndarray]:
    """Weighted least squares of the joint model; per width its ``(c, b, a, d)`` (4 x columns of y)."""
    sw = np.sqrt(np.concatenate(ns))[:, None]
    y = np.concatenate([np.atleast_2d(v.T).T for v in ys])
    coef = np.linalg.lstsq(_design(us, cubic) * sw, y * sw, rcond=None)[0]
    d = coef[-1] if cubic else np.zeros(coef.shape[1])
    return [np.vstack([coef[3 * m : 3 * m + 3], d[None]]) for m in range(len(us))]


def _noise(res: tuple[float, int], curves: list[Curve], prior: float) -> tuple[float, float, str]:
    """``(σ, degrees of freedom, source)``: the larger of the residual and seed-spread estimates with
    >= 2 degrees of freedom, else the ``prior`` (infinite degrees of freedom: taken as known)."""
    ss = dof = 0
    for c in curves:
        ok = np.isfinite(c.y) & (c.n >= 2)
        ss, dof = ss + float((c.n[ok] * c.sd[ok] ** 2).sum()), dof + int((c.n[ok] - 1).sum())
    found = [(s / k, k, name) for (s, k), name in [(res, "residuals"), ((ss, dof), "seeds")] if k >= 2]
    if not found:
        return prior, np.inf, "prior"
    var, dof, name = max(found)
    return float(np.sqrt(var)), dof, name


def _variants(k: int, argmin: int) -> list[slice]:
    """The window itself and, with more than ``MIN_POINTS`` points, the window less one end point
    (never the minimum)."""
    out = [slice(0, k)]
    if k > MIN_POINTS:
        out += [s for s, end in [(slice(1, k), 0), (slice(0, k - 1), k - 1)] if end != argmin]
    return out


def _refit(us: list[np.ndarray], ns: list[np.ndarray], ys: list[np.ndarray], argmins: list[int], cubic: bool,
           rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Refit each bootstrap column on a window chosen at random among `_variants`; per width the
    coefficients (4 x draws) and each draw's window ends."""
    draws = ys[0].shape[1]
    combos = list(itertools.product(*[_variants(len(u), i) for u, i in zip(us, argmins)]))
    pick = rng.integers(len(combos), size=draws)
    coef = [np.empty((4, draws)) for _ in us]
    lo, hi = [np.empty(draws) for _ in us], [np.empty(draws) for _ in us]
    for k in np.unique(pick):
        cols = pick == k
        sub = [u[s] for u, s in zip(us, combos[k])]
        fit = _solve(sub, [n[s] for n, s in zip(ns, combos[k])], [y[s][:, cols] for y, s in zip(ys, combos[k])], cubic)
        for m, u in enumerate(sub):
            coef[m][:, cols], lo[m][cols], hi[m][cols] = fit[m], u[0], u[-1]
    return coef, lo, hi


def _cubic(coef: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The cubic of ``coef = (c, b, a, d)`` at ``u`` (broadcast against the coefficients' columns)."""
    c, b, a, d = coef
    return c + u * (b + u * (a + u * d))


def _summary(x: np.ndarray, draws: np.ndarray) -> dict:
    """Point ``x_opt``, the central ``LEVEL`` interval of the draws and their std, in log2 LR."""
    tail = 50 * (1 - LEVEL)
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return {"x_opt": float(x), "x_lo": float(min(lo, x)), "x_hi": float(max(hi, x)), "x_sd": float(draws.std())}


@dataclass
class _Joint:
    """The joint fit of an arm's resolved curves: per width the point fit and the bootstrap refits."""

    ref: float
    us: list[np.ndarray]
    point: list[np.ndarray]
    boot: list[np.ndarray]
    lo: list[np.ndarray]
    hi: list[np.ndarray]
    sigma: float
    source: str


def _joint(curves: list[Curve], prior: float, draws: int, rng: np.random.Generator) -> _Joint:
    """Fit the windows of ``curves`` jointly, estimate σ and refit ``draws`` bootstrap samples."""
    ref = float(np.median(np.concatenate([c.x for c in curves])))
    us, ns, ys = [c.x - ref for c in curves], [c.n for c in curves], [c.y for c in curves]
    cubic = sum(len(u) - 3 for u in us) >= 2  # the shared term needs a point beyond the quadratics
    point = [p[:, 0] for p in _solve(us, ns, ys, cubic)]
    fitted = [_cubic(p, u) for p, u in zip(point, us)]
    ss = float(sum((n * (y - f) ** 2).sum() for n, y, f in zip(ns, ys, fitted)))
    sigma, dof, source = _noise((ss, sum(map(len, us)) - 3 * len(us) - cubic), curves, prior)
    scale = sigma * np.sqrt(dof / rng.chisquare(dof, draws)) if np.isfinite(dof) else np.full(draws, sigma)
    boot_y = [f[:, None] + scale / np.sqrt(n)[:, None] * rng.standard_normal((len(u), draws))
              for f, n, u in zip(fitted, ns, us)]
    boot, lo, hi = _refit(us, ns, boot_y, [int(np.argmin(y)) for y in ys], cubic, rng)
    return _Joint(ref, us, point, boot, lo, hi, sigma, source)


def _edge(curve: Curve, win: slice, u: float, interior: bool, u_first: float, u_last: float) -> str:
    """"low" / "high" when the minimum is at that end of the grid (grid argmin or fitted minimum)."""
    i = int(np.argmin(curve.y))
    if i == 0 or (not interior and win.start == 0 and u == u_first):
        return "low"
    if i == len(curve.y) - 1 or (not interior and win.stop == len(curve.y) and u == u_last):
        return "high"
    return ""


def _unresolved(curve: Curve, win: slice | None, draws: int, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """A curve with fewer than 3 points to fit: its best LR, resolved to ± half a grid step."""
    if win is None:
        return {"x_opt": np.nan, "x_lo": np.nan, "x_hi": np.nan, "x_sd": np.nan, "loss_opt": np.inf,
                "interior": False, "edge": "", "n_fit": 0}, np.full(draws, np.nan)
    i = int(np.argmin(curve.y))
    half = 0.5 * float(np.median(np.diff(curve.x))) if len(curve.x) > 1 else 0.5
    x = curve.x[i] + rng.uniform(-half, half, draws)
    edge = "low" if i == 0 else "high" if i == len(curve.y) - 1 else ""
    return {**_summary(curve.x[i], x), "loss_opt": float(curve.y[i]), "interior": False, "edge": edge,
            "n_fit": win.stop - win.start}, x


def fit_arm(curves: list[Curve], noise: float = NOISE, draws: int = DRAWS, seed: int = 0) -> ArmFit:
    """Optimum, 90% interval and transfer regret of each curve of one arm (``curves[0]``: the base width).

    Each row: ``x_opt, x_lo, x_hi, x_sd`` (log2 LR; ``x_opt`` is the grid end where ``edge`` is set),
    ``loss_opt`` (fitted loss there), ``interior`` (a local minimum inside the window), ``edge``
    ("low" | "high" | "": the minimum is at that end of the grid; no optimum is claimed), ``n_fit``
    (points fitted), ``regret, regret_lo, regret_hi`` (fitted loss at the base width's optimum minus
    this width's minimum: 0 at the base, NaN where the base has no claimed optimum, a lower bound
    where the base optimum lies outside this width's window). ``noise``: loss std of one seed, used
    when neither residuals nor seeds estimate it (see the module docstring).
    """
    if not noise > 0:
        raise ValueError(f"noise: must be > 0 (loss std of one seed), got {noise!r}")
    if draws < 20:
        raise ValueError(f"draws: need at least 20 bootstrap draws, got {draws!r}")
    rng = np.random.default_rng(seed)
    wins = [window(c.y) if np.isfinite(c.y).any() else None for c in curves]
    resolved = [m for m, w in enumerate(wins) if w is not None and w.stop - w.start >= 3]
    rows, opt = zip(*[_unresolved(c, w, draws, rng) for c, w in zip(curves, wins)])
    rows, opt = list(rows), np.array(opt)
    if not resolved:
        return ArmFit(rows, opt, noise, "prior")
    sub = [Curve(*(getattr(curves[m], f)[wins[m]] for f in ("x", "y", "n", "sd"))) for m in resolved]
    j = _joint(sub, noise, draws, rng)
    for k, m in enumerate(resolved):
        u0, f0, inner = (v[0] for v in cubic_min(j.point[k][:, None], j.us[k][0], j.us[k][-1]))
        ub, _, _ = cubic_min(j.boot[k], j.lo[k], j.hi[k])
        edge = _edge(curves[m], wins[m], u0, bool(inner), j.us[k][0], j.us[k][-1])
        opt[m] = ub + j.ref
        rows[m] = {**_summary(u0 + j.ref, opt[m]), "loss_opt": float(f0), "interior": bool(inner), "edge": edge,
                   "n_fit": len(j.us[k])}
    for row, regret in zip(rows, _regrets(j, resolved, rows, len(curves))):
        row.update(regret)
    return ArmFit(rows, opt, j.sigma, j.source)


def _regrets(j: _Joint, resolved: list[int], rows: list[dict], n_curves: int) -> list[dict]:
    """Per curve ``regret, regret_lo, regret_hi``: each width's fitted loss at the base optimum
    (clipped to its window) minus its own fitted minimum, point and bootstrap interval."""
    out = [{"regret": np.nan, "regret_lo": np.nan, "regret_hi": np.nan} for _ in range(n_curves)]
    if not resolved or resolved[0] != 0 or rows[0]["edge"]:
        return out
    base_u0 = rows[0]["x_opt"] - j.ref
    base_ub = cubic_min(j.boot[0], j.lo[0], j.hi[0])[0]
    tail = 50 * (1 - LEVEL)
    for k, m in enumerate(resolved):
        u0, f0, _ = cubic_min(j.point[k][:, None], j.us[k][0], j.us[k][-1])
        point = float(_cubic(j.point[k], np.clip(base_u0, j.us[k][0], j.us[k][-1])) - f0[0])
        ub, fb, _ = cubic_min(j.boot[k], j.lo[k], j.hi[k])
        draws = _cubic(j.boot[k], np.clip(base_ub, j.lo[k], j.hi[k])) - fb
        lo, hi = np.percentile(draws, [tail, 100 - tail])
        out[m] = {"regret": point, "regret_lo": float(min(lo, point)), "regret_hi": float(max(hi, point))}
    return out


def slope(log2_m: np.ndarray, x_opt: np.ndarray, draws: np.ndarray) -> tuple[float, float, float]:
    """How fast the optimum moves: the weighted least-squares slope of the optima ``x_opt`` (log2 LR)
    against ``log2_m`` (log2 width multiplier), in octaves per width doubling, and its ``LEVEL``
    interval from the slope of each joint bootstrap draw (``draws``: widths x draws). Weights:
    1 / the variance of each width's draws."""
    w = 1.0 / np.maximum(draws.var(axis=1), 1e-8)
    lm = log2_m - (w @ log2_m) / w.sum()
    sxx = w @ lm**2
    est = float((w * lm) @ x_opt / sxx)
    tail = 50 * (1 - LEVEL)
    lo, hi = np.percentile((w * lm) @ draws / sxx, [tail, 100 - tail])
    return est, float(min(lo, est)), float(max(hi, est))
