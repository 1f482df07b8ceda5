"""The optimum of each loss-vs-LR curve of an arm, with a 90% interval: two curve models, averaged.

Each width's curve of seed-mean loss against ``x = log2(LR)`` is fitted over a `window` of up to 7
finite points around its minimum (an unstable point, loss ``+inf``, bounds the window), weighted by
the number of seeds, by the two models of `curve_models` — a cubic, and a quadratic with different
curvatures below and above the optimum — each with its asymmetry shared by the arm's widths. Each
model alone is biased on shapes it cannot represent (bench/README.md measures how much); they are
averaged with weights ``∝ exp(−RSS/2σ²)`` (they have as many parameters), and the interval draws
from both, so that it spans what the data cannot tell apart.

The interval is a parametric bootstrap: ``draws`` samples ``ŷ + σ_b/√n·z``, split between the models
by their weights, each from and refitted by its model. σ, the loss std of one seed, is per model the
larger of two pooled estimates (so a misfit widens the interval instead of hiding in the seed
spread): the model's residuals and the spread between seeds at the same LR; each draw scales it by
``√(ν/χ²_ν)`` (ν: its degrees of freedom), the bootstrap form of a Student t. With fewer than 2
degrees of freedom (short windows, one seed) the residuals are pooled with a prior of ``PRIOR_DOF``
pseudo-observations of σ₀ = ``PRIOR_SCALE`` × the loss level — a scale of the curve itself, never
a constant in loss units — unless the caller gives σ₀ (``noise``). Each draw also drops one end
point of a window at random (keeping >= 5 points), so the interval counts how much the optimum
depends on which points were fitted. These are statistics, not the paper's equations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lrtransfer.analysis.curve_models import Cubic, TwoSided, shared

PRIOR_SCALE = 0.004  # σ₀ / |loss|: one seed's loss std relative to the loss, as on short LM runs
PRIOR_DOF = 2  # pseudo-observations of σ₀ pooled with fewer than 2 residual degrees of freedom
DRAWS = 1000
MAX_POINTS, MIN_POINTS = 7, 5
LEVEL = 0.90
MODELS = (Cubic, TwoSided)
EPS = 1e-6  # octaves: an optimum this close to a window end sits on it


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


@dataclass(frozen=True)
class _Windows:
    """The windows of an arm's curves with >= 3 points (``resolved``), in ``u = x − ref``."""

    wins: list[slice | None]
    resolved: list[int]
    ref: float
    us: list[np.ndarray]
    ns: list[np.ndarray]
    ys: list[np.ndarray]


def _windows(curves: list[Curve]) -> _Windows:
    wins = [window(c.y) if np.isfinite(c.y).any() else None for c in curves]
    resolved = [m for m, w in enumerate(wins) if w is not None and w.stop - w.start >= 3]
    ref = float(np.median(np.concatenate([curves[m].x[wins[m]] for m in resolved]))) if resolved else 0.0
    return _Windows(wins, resolved, ref, [curves[m].x[wins[m]] - ref for m in resolved],
                    [curves[m].n[wins[m]] for m in resolved], [curves[m].y[wins[m]] for m in resolved])


@dataclass
class _ModelFit:
    """One curve model fitted to an arm's windows, its noise estimate and its bootstrap refits."""

    model: type
    point: list[np.ndarray]
    rss: float
    sigma: float
    dof: float
    source: str
    boot: list[np.ndarray] = field(default_factory=list)
    lo: list[np.ndarray] = field(default_factory=list)
    hi: list[np.ndarray] = field(default_factory=list)


def _seed_spread(curves: list[Curve]) -> tuple[float, int]:
    """Pooled within-LR sum of squares over seeds (weights n) and its degrees of freedom."""
    ss = dof = 0
    for c in curves:
        ok = np.isfinite(c.y) & (c.n >= 2)
        ss, dof = ss + float((c.n[ok] * c.sd[ok] ** 2).sum()), dof + int((c.n[ok] - 1).sum())
    return ss, dof


def _noise(res: tuple[float, int], seeds: tuple[float, int], prior: float) -> tuple[float, float, str]:
    """``(σ, degrees of freedom, source)``: the larger of the residual and seed-spread estimates with
    >= 2 degrees of freedom, else the residuals pooled with `PRIOR_DOF` pseudo-observations of the
    ``prior`` σ₀ ("prior" when there are no residuals at all)."""
    found = [(s / k, k, name) for (s, k), name in [(res, "residuals"), (seeds, "seeds")] if k >= 2]
    if found:
        var, dof, name = max(found)
        return float(np.sqrt(var)), dof, name
    ss, k = res if res[1] > 0 else (0.0, 0)
    return float(np.sqrt((ss + PRIOR_DOF * prior**2) / (k + PRIOR_DOF))), k + PRIOR_DOF, \
        "residuals+prior" if k else "prior"


def prior_noise(w: _Windows) -> float:
    """σ₀ = `PRIOR_SCALE` × the median magnitude of the fitted losses: a noise scale of the curve."""
    level = float(np.median(np.abs(np.concatenate(w.ys))))
    return PRIOR_SCALE * level if level > 0 else PRIOR_SCALE


def _fit_model(model, w: _Windows, seeds: tuple[float, int], prior: float) -> _ModelFit:
    """Point fit of ``model`` and its noise estimate."""
    point = model.fit(w.us, [n[:, None] for n in w.ns], [y[:, None] for y in w.ys])
    rss = float(sum((n * (y - model.predict(p, u[None])[0]) ** 2).sum() for p, u, n, y in zip(point, w.us, w.ns, w.ys)))
    dof = sum(map(len, w.us)) - 3 * len(w.us) - shared(w.us)
    return _ModelFit(model, point, rss, *_noise((rss, dof), seeds, prior))


def _weights(fits: list[_ModelFit], seeds: tuple[float, int]) -> np.ndarray:
    """Each model's weight ``∝ exp(−RSS/2σ²)`` (the models have as many parameters), σ: the seed
    spread if measured, else the smaller of the models' noise estimates."""
    var = seeds[0] / seeds[1] if seeds[1] >= 2 else min(f.sigma for f in fits) ** 2
    rss = np.array([f.rss for f in fits])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = np.exp(-np.nan_to_num((rss - rss.min()) / (2 * var), nan=0.0, posinf=np.inf))
    return w / w.sum()


def _bootstrap(f: _ModelFit, w: _Windows, draws: int, rng: np.random.Generator) -> None:
    """Fill ``f.boot, f.lo, f.hi`` with ``draws`` refits of samples from ``f``'s fitted curves."""
    scale = f.sigma * np.sqrt(f.dof / rng.chisquare(f.dof, draws)) if np.isfinite(f.dof) else np.full(draws, f.sigma)
    ys = [f.model.predict(p, u[:, None]) + scale / np.sqrt(n)[:, None] * rng.standard_normal((len(u), draws))
          for p, u, n in zip(f.point, w.us, w.ns)]
    weights, f.lo, f.hi = [], [], []
    for u, n, y in zip(w.us, w.ns, w.ys):  # each width on a window chosen at random per draw
        options = np.stack(_variants(len(u), int(np.argmin(y))), axis=1)
        mask = options[:, rng.integers(options.shape[1], size=draws)]
        weights.append(n[:, None] * mask)
        f.lo.append(u[mask.argmax(axis=0)])
        f.hi.append(u[len(u) - 1 - mask[::-1].argmax(axis=0)])
    f.boot = f.model.fit(w.us, weights, ys) if draws else [np.empty((4, 0)) for _ in w.us]


def _variants(k: int, argmin: int) -> list[np.ndarray]:
    """Masks of a ``k``-point window: all of it and, with more than ``MIN_POINTS`` points, all but
    one end point (never the minimum)."""
    out = [np.ones(k, bool)]
    if k > MIN_POINTS:
        out += [np.arange(k) != end for end in (0, k - 1) if end != argmin]
    return out


def _summary(x: float, draws: np.ndarray) -> dict:
    """Point ``x_opt``, the central ``LEVEL`` interval of the draws and their std, in log2 LR."""
    tail = 50 * (1 - LEVEL)
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return {"x_opt": float(x), "x_lo": float(min(lo, x)), "x_hi": float(max(hi, x)), "x_sd": float(draws.std())}


def _edge(curve: Curve, win: slice, x: float) -> str:
    """"low" / "high" when the minimum is at that end of the grid: the grid argmin, or a fitted
    optimum at a window end that is the grid's end."""
    i = int(np.argmin(curve.y))
    if i == 0 or (win.start == 0 and x - curve.x[0] < EPS):
        return "low"
    if i == len(curve.y) - 1 or (win.stop == len(curve.y) and curve.x[-1] - x < EPS):
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


def _optimum(fits: list[_ModelFit], weights: np.ndarray, w: _Windows, k: int) -> tuple[dict, np.ndarray]:
    """Row and draws (log2 LR) of resolved curve ``k``: the models' weighted mean optimum, their draws."""
    u, ref = w.us[k], w.ref
    point = [f.model.minimum(f.point[k], u[0], u[-1]) for f in fits]
    x = float(weights @ [p[0][0] for p in point])
    draws = np.concatenate([f.model.minimum(f.boot[k], f.lo[k], f.hi[k])[0] for f in fits]) + ref
    return {**_summary(x + ref, draws), "loss_opt": float(weights @ [p[1][0] for p in point]),
            "interior": bool(u[0] + EPS < x < u[-1] - EPS), "n_fit": len(u)}, draws


def fit_arm(curves: list[Curve], noise: float | None = None, draws: int = DRAWS, seed: int = 0) -> ArmFit:
    """Optimum, 90% interval and transfer regret of each curve of one arm (``curves[0]``: the base width).

    Each row: ``x_opt, x_lo, x_hi, x_sd`` (log2 LR; ``x_opt`` is the grid end where ``edge`` is set),
    ``loss_opt`` (fitted loss there), ``interior`` (the optimum lies inside the fit window, not at an
    end), ``edge`` ("low" | "high" | "": the minimum is at that end of the grid; no optimum is
    claimed), ``n_fit`` (points fitted), ``regret, regret_lo, regret_hi`` (fitted loss at the base
    width's optimum minus this width's minimum: 0 at the base, NaN where the base has no claimed
    optimum, a lower bound where the base optimum lies outside this width's window). ``noise``: the
    prior σ₀ of one seed's loss std in loss units, pooled in where residuals and seeds do not
    estimate it (default: `prior_noise`, a scale of the curve; see the module docstring).
    ``ArmFit.noise`` is one seed's loss std: the seed spread where measured, else the better model's
    estimate.
    """
    if noise is not None and not noise > 0:
        raise ValueError(f"noise: must be > 0 (loss std of one seed), got {noise!r}")
    if draws < 20:
        raise ValueError(f"draws: need at least 20 bootstrap draws, got {draws!r}")
    rng = np.random.default_rng(seed)
    w = _windows(curves)
    rows, opt = map(list, zip(*[_unresolved(c, win, draws, rng) for c, win in zip(curves, w.wins)]))
    if not w.resolved:
        return ArmFit(rows, np.array(opt), np.nan if noise is None else noise, "prior")
    prior = prior_noise(w) if noise is None else noise
    seeds = _seed_spread(curves)
    fits = [_fit_model(model, w, seeds, prior) for model in MODELS]
    weights = _weights(fits, seeds)
    for f, k in zip(fits, np.diff(np.round(np.cumsum([0, *weights]) * draws).astype(int))):
        _bootstrap(f, w, k, rng)
    for k, m in enumerate(w.resolved):
        rows[m], opt[m] = _optimum(fits, weights, w, k)
        rows[m]["edge"] = _edge(curves[m], w.wins[m], rows[m]["x_opt"])
    for row, regret in zip(rows, _regrets(fits, weights, w, rows)):
        row.update(regret)
    best = min(fits, key=lambda f: f.sigma)
    return ArmFit(rows, np.array(opt), *((np.sqrt(seeds[0] / seeds[1]), "seeds") if seeds[1] >= 2
                                         else (best.sigma, best.source)))


def _regrets(fits: list[_ModelFit], weights: np.ndarray, w: _Windows, rows: list[dict]) -> list[dict]:
    """Per curve ``regret, regret_lo, regret_hi``: each width's fitted loss at the base optimum
    (clipped to its window) minus its own fitted minimum; the point is the models' weighted mean."""
    out = [{"regret": np.nan, "regret_lo": np.nan, "regret_hi": np.nan} for _ in rows]
    if w.resolved[0] != 0 or rows[0]["edge"]:
        return out
    tail = 50 * (1 - LEVEL)
    for k, m in enumerate(w.resolved):
        lo, hi = w.us[k][0], w.us[k][-1]
        point, draws = [], []
        for f in fits:
            base = f.model.minimum(f.point[0], w.us[0][0], w.us[0][-1])[0]
            own = f.model.minimum(f.point[k], lo, hi)[1]
            point.append(float(f.model.predict(f.point[k], np.clip(base, lo, hi))[0] - own[0]))
            base = f.model.minimum(f.boot[0], f.lo[0], f.hi[0])[0]
            own = f.model.minimum(f.boot[k], f.lo[k], f.hi[k])[1]
            draws.append(f.model.predict(f.boot[k], np.clip(base, f.lo[k], f.hi[k])) - own)
        p = float(weights @ point)
        q = np.percentile(np.concatenate(draws), [tail, 100 - tail])
        out[m] = {"regret": p, "regret_lo": float(min(q[0], p)), "regret_hi": float(max(q[1], p))}
    return out


@dataclass(frozen=True)
class ShiftLine:
    """log2 of the best LR against log2 of the width multiplier: the weighted least-squares line
    through the fitted optima, and the line through each joint bootstrap draw of them. ``centre``:
    the weighted mean log2 m, where ``level`` (log2 LR) is least uncertain."""

    centre: float
    level: float
    slope: float
    levels: np.ndarray
    slopes: np.ndarray

    def slope_interval(self) -> tuple[float, float, float]:
        """The slope (octaves per width doubling) and its ``LEVEL`` interval."""
        return _interval(self.slope, self.slopes)

    def at(self, log2_m: float) -> tuple[float, float, float]:
        """log2 of the best LR at ``log2_m`` and its ``LEVEL`` interval, extrapolating the line."""
        d = log2_m - self.centre
        return _interval(self.level + self.slope * d, self.levels + self.slopes * d)


def _interval(est: float, draws: np.ndarray) -> tuple[float, float, float]:
    tail = 50 * (1 - LEVEL)
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(est), float(min(lo, est)), float(max(hi, est))


def shift_line(log2_m: np.ndarray, x_opt: np.ndarray, draws: np.ndarray) -> ShiftLine:
    """The `ShiftLine` of optima ``x_opt`` (log2 LR) at ``log2_m``, with ``draws`` (widths x draws)
    of them; weights: 1 / the variance of each width's draws."""
    w = 1.0 / np.maximum(draws.var(axis=1), 1e-8)
    centre = float(w @ log2_m / w.sum())
    lm = log2_m - centre
    sxx = w @ lm**2
    return ShiftLine(centre, float(w @ x_opt / w.sum()), float((w * lm) @ x_opt / sxx), w @ draws / w.sum(),
                     (w * lm) @ draws / sxx)


def slope(log2_m: np.ndarray, x_opt: np.ndarray, draws: np.ndarray) -> tuple[float, float, float]:
    """How fast the optimum moves: the slope of `shift_line`, in octaves per width doubling, and its
    ``LEVEL`` interval from the slope of each joint bootstrap draw (``draws``: widths x draws)."""
    return shift_line(log2_m, x_opt, draws).slope_interval()
