"""Does the LR transfer? Best LR per (arm, width) with its interval, the shift across widths, verdicts.

Input is the ``results`` frame of a sweep (docs/study.md): one row per planned run with
``phase, arm, width_mult, lr, seed, status`` and the loss metric. A run that ``diverged`` or
``failed``, or whose metric is NaN, counts as loss ``+inf``; ``pending`` and ``running`` runs (not
run yet, in flight, or killed) are left out. Seeds are averaged, so one unstable seed makes its LR
unstable (``+inf``); a seed-mean loss far above its neighbours (`blowups`: a finite blow-up or a
spike) is unstable too. The optimum of each curve and its 90% interval come from `fit`; the verdict
compares the interval of the shift, in octaves per width doubling, with a tolerance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrtransfer.analysis.blowups import blowups
from lrtransfer.analysis.fit import DRAWS, MIN_POINTS, Curve, ShiftLine, fit_arm, shift_line
from lrtransfer.analysis.frames import in_phase
from lrtransfer.phases import Phase
from lrtransfer.records.store import DIVERGED, FAILED, PENDING, RUNNING

UNSTABLE = (DIVERGED, FAILED)
UNKNOWN = (PENDING, RUNNING)  # not run yet, or in flight / killed: no result to count
TOLERANCE = 0.25  # octaves per width doubling: |shift| below this "transfers"


def select_phase(frame: pd.DataFrame, phase: Phase | int | str | None) -> pd.DataFrame:
    """Rows of ``phase`` (`frames.in_phase`); all rows for ``None``."""
    if phase is None or "phase" not in frame:
        return frame
    return frame[in_phase(frame, phase)]


def lr_curves(results: pd.DataFrame, metric: str = "final_train_loss",
              phase: Phase | int | str | None = Phase.TWO) -> pd.DataFrame:
    """Loss vs LR per (arm, width_mult): mean over seeds, ``+inf`` where any seed was unstable.

    Columns: ``arm, width_mult, lr, loss, loss_std, n_seeds, n_unstable, blowup`` (+ ``width``
    when given), sorted by arm, width and LR. ``loss_std`` is over the stable seeds; ``blowup``
    marks a finite loss that `blowups` takes as unstable (the fit treats it as ``+inf``).
    """
    for column in ("arm", "width_mult", "lr", metric):
        if column not in results:
            raise ValueError(f"results: has no {column!r} column")
    df = select_phase(results, phase)
    if "status" in df:
        df = df[~df["status"].astype(str).isin(UNKNOWN)]
    loss = pd.to_numeric(df[metric], errors="coerce").astype(float)
    bad = ~np.isfinite(loss)
    if "status" in df:
        bad |= df["status"].astype(str).isin(UNSTABLE)
    df = df.assign(_loss=loss.where(~bad, np.inf), _bad=bad)
    keys = ["arm", "width_mult", "lr"]
    out = df.groupby(keys, sort=True).agg(loss=("_loss", "mean"), n_seeds=("_loss", "size"),
                                          n_unstable=("_bad", "sum")).reset_index()
    out["loss_std"] = df.assign(_ok=loss.where(~bad)).groupby(keys, sort=True)["_ok"].std(ddof=0).to_numpy()
    if "width" in df:
        out = out.merge(df.groupby(["arm", "width_mult"])["width"].first().reset_index(), on=["arm", "width_mult"])
    out["n_unstable"] = out["n_unstable"].astype(int)
    out["blowup"] = np.concatenate([blowups(c.loss.to_numpy(float)) for _, c in out.groupby(["arm", "width_mult"],
                                                                                            sort=True)] or [[]])
    return out


def _arm_rows(curves: pd.DataFrame, noise: float | None, draws: int, seed: int) -> tuple[list[dict], ShiftLine | None]:
    """`best_lrs` rows of one arm (grid best, fitted optimum with interval, fitted regret, arm shift)
    and the arm's `ShiftLine` (None with fewer than two widths with an optimum)."""
    groups = [c for _, c in curves.groupby("width_mult", sort=True)]
    fits = fit_arm([_curve(c) for c in groups], noise, draws, seed)
    ok = [k for k, r in enumerate(fits.rows) if np.isfinite(r["x_opt"])]
    log2_m = np.log2([float(groups[k].width_mult.iloc[0]) for k in ok])
    line = shift_line(log2_m, np.array([fits.rows[k]["x_opt"] for k in ok]), fits.draws[ok]) if len(ok) > 1 else None
    arm_shift = line.slope_interval() if line else (np.nan,) * 3
    rows = []
    for curve, fitted in zip(groups, fits.rows):
        extra = {"width": curve["width"].iloc[0]} if "width" in curve else {}
        row = {"arm": curve.arm.iloc[0], "width_mult": curve.width_mult.iloc[0], **extra, **_grid_best(curve),
               **_optimum(curve, fitted), "n_blowup": int(curve.blowup.sum()), "noise": fits.noise,
               "noise_source": fits.noise_source}
        rows.append({**row, **dict(zip(("arm_shift", "arm_shift_lo", "arm_shift_hi"), arm_shift))})
    return rows, line


def _curve(curve: pd.DataFrame) -> Curve:
    loss = np.where(curve.blowup, np.inf, curve.loss.to_numpy(float))
    return Curve(np.log2(curve.lr.to_numpy(float)), loss, curve.n_seeds.to_numpy(float), curve.loss_std.to_numpy(float))


def _grid_best(curve: pd.DataFrame) -> dict:
    """Grid argmin of one sorted loss-vs-LR curve, its size and the median ratio of neighbouring LRs."""
    lr, loss = curve["lr"].to_numpy(float), curve["loss"].to_numpy(float)
    ratio = float(np.exp(np.median(np.diff(np.log(lr))))) if len(lr) > 1 else np.nan
    row = {"n_lrs": len(lr), "grid_ratio": ratio, "lr_grid": np.nan, "loss_grid": np.inf}
    if np.isfinite(loss).any():
        i = int(np.argmin(loss))  # first of equal minima
        row.update(lr_grid=lr[i], loss_grid=loss[i])
    return row


def _optimum(curve: pd.DataFrame, fitted: dict) -> dict:
    """`fit.fit_arm`'s answer in LR units; at a grid edge the grid point stands in (not claimed)."""
    finite = np.isfinite(curve.loss)
    row = {"lr_fit": 2.0 ** fitted["x_opt"], "lr_lo": 2.0 ** fitted["x_lo"], "lr_hi": 2.0 ** fitted["x_hi"],
           "opt_sd": fitted["x_sd"], "loss_fit": fitted["loss_opt"], "fit": fitted["interior"],
           "at_edge": bool(fitted["edge"]), "extend": {"low": "lower", "high": "higher"}.get(fitted["edge"], ""),
           "optimum_claimed": bool(finite.any()) and not fitted["edge"], "n_fit": fitted["n_fit"],
           "n_seeds": int(curve.n_seeds[finite].min()) if finite.any() else 0,
           "regret_fit": fitted.get("regret", np.nan), "regret_lo": fitted.get("regret_lo", np.nan),
           "regret_hi": fitted.get("regret_hi", np.nan)}
    if row["at_edge"]:
        end = curve.iloc[0] if fitted["edge"] == "low" else curve.iloc[-1]
        row.update(lr_fit=float(end.lr), loss_fit=float(end.loss), fit=False)
    return row


def best_lrs(results: pd.DataFrame, metric: str = "final_train_loss", phase: Phase | int | str | None = Phase.TWO, *,
             noise: float | None = None, draws: int = DRAWS, seed: int = 0) -> pd.DataFrame:
    """Best LR per (arm, width_mult): the fitted optimum with its 90% interval, and the transfer regret.

    The optimum comes from `fit.fit_arm` (two asymmetric curve models in log2 LR over up to 7 points
    around the minimum, averaged by how well they fit; a parametric bootstrap for the interval;
    ``noise`` is a prior of one seed's loss std in loss units, pooled in only where neither residuals
    nor seeds estimate it (default: a scale of the curve, `fit.prior_noise`);
    ``draws`` bootstrap samples, ``seed`` their random seed, so that a verdict is reproducible). Columns:
    ``arm, width_mult, [width,] n_lrs, grid_ratio`` (median ratio of neighbouring LRs), ``lr_grid,
    loss_grid`` (grid argmin of the seed-mean loss), ``lr_fit, lr_lo, lr_hi`` (fitted optimum and its
    90% interval), ``opt_sd`` (std of the optimum, octaves), ``loss_fit`` (fitted loss there), ``fit``
    (the optimum lies inside the fit window; False where an unstable LR or the window end bounds it),
    ``at_edge, extend`` (minimum at the grid edge: ``lr_fit, loss_fit`` are then the grid end's, no
    optimum is claimed and ``extend`` says which way: "lower" | "higher"), ``optimum_claimed``,
    ``n_fit`` (points fitted), ``n_seeds`` (fewest seeds at a stable LR), ``transfer_lr`` (the grid LR
    best at the arm's smallest width, or the nearest LR of this width's grid), ``loss_at_transfer``,
    ``regret = loss_at_transfer - loss_grid`` (measured on the grid), ``regret_fit, regret_lo,
    regret_hi`` (fitted: loss at the base width's fitted optimum minus this width's fitted minimum,
    90% interval), ``noise, noise_source`` (one seed's loss std used: "seeds" | "residuals" |
    "residuals+prior" | "prior"), ``n_blowup`` (finite losses taken as unstable, `blowups`) and the
    arm's ``arm_shift, arm_shift_lo, arm_shift_hi`` (`fit.slope`, octaves per width doubling).
    """
    return fit_curves(lr_curves(results, metric, phase), noise=noise, draws=draws, seed=seed)[0]


def fit_curves(curves: pd.DataFrame, *, noise: float | None = None, draws: int = DRAWS,
               seed: int = 0) -> tuple[pd.DataFrame, dict[str, ShiftLine]]:
    """`best_lrs` of the `lr_curves` frame ``curves``, and each arm's `ShiftLine` (arms with an
    optimum at two or more widths)."""
    rows, lines = [], {}
    for arm, c in curves.groupby("arm", sort=True):
        arm_rows, line = _arm_rows(c, noise, draws, seed)
        rows += arm_rows
        if line is not None:
            lines[str(arm)] = line
    best = pd.DataFrame(rows)
    if best.empty:
        return best, lines
    best = pd.concat([_regret(g, curves[curves.arm == arm]) for arm, g in best.groupby("arm", sort=True)])
    return best.reset_index(drop=True), lines


def _regret(best: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Add ``transfer_lr``, ``loss_at_transfer`` and ``regret`` to one arm's rows."""
    base_lr = best.loc[best.width_mult.idxmin(), "lr_grid"]
    out = []
    for m in best.width_mult:
        curve = curves[curves.width_mult == m]
        if np.isnan(base_lr):
            out.append((np.nan, np.nan))
            continue
        j = int(np.argmin(np.abs(np.log(curve.lr.to_numpy(float) / base_lr))))
        out.append((curve.lr.iloc[j], curve.loss.iloc[j]))
    best = best.assign(transfer_lr=[a for a, _ in out], loss_at_transfer=[b for _, b in out])
    with np.errstate(invalid="ignore"):  # inf - inf (nothing stable here) is NaN
        return best.assign(regret=best.loss_at_transfer - best.loss_grid)


def signed(x: float, digits: int = 1) -> str:
    """``+0.3`` / ``-2.0``, never ``-0.0``."""
    text = f"{x:+.{digits}f}"
    return "+" + text[1:] if float(text) == 0 else text


def optimum_shift(best: pd.DataFrame, grid_ratio: float | None = None) -> pd.DataFrame:
    """Per arm: how fast the fitted optimum moves with width, with its 90% interval.

    Columns: ``arm, m_min, m_max, lr_min, lr_max`` (fitted optima at the extreme widths),
    ``per_doubling, per_doubling_lo, per_doubling_hi`` (`fit.slope` over all widths, octaves per
    width doubling), ``shift_log2`` (``per_doubling · log2(m_max/m_min)``), ``grid_steps``
    (``shift_log2 / log2(grid_ratio)``; default: the arm's median ``grid_ratio``), ``any_edge``,
    ``any_unstable`` (a width with no stable LR), ``max_regret`` (largest fitted regret over widths)
    with ``regret_lo, regret_hi`` (its interval) and ``m_regret`` (its width), ``noise`` (one seed's
    loss std) and ``n_widths``.
    """
    rows = []
    for arm, g in best.groupby("arm", sort=False):
        g = g.sort_values("width_mult")
        lo, hi = g.iloc[0], g.iloc[-1]
        ratio = grid_ratio or (float(np.nanmedian(g.grid_ratio)) if g.grid_ratio.notna().any() else np.nan)
        worst = g.loc[g.regret_fit.idxmax()] if g.regret_fit.notna().any() else lo
        total = lo.arm_shift * np.log2(hi.width_mult / lo.width_mult)
        rows.append({
            "arm": arm, "m_min": lo.width_mult, "m_max": hi.width_mult, "lr_min": lo.lr_fit, "lr_max": hi.lr_fit,
            "per_doubling": lo.arm_shift, "per_doubling_lo": lo.arm_shift_lo, "per_doubling_hi": lo.arm_shift_hi,
            "shift_log2": total, "grid_steps": total / np.log2(ratio) if ratio and ratio > 1 else np.nan,
            "any_edge": bool(g.at_edge.any()), "any_unstable": bool(g.lr_grid.isna().any()),
            "max_regret": worst.regret_fit, "regret_lo": worst.regret_lo, "regret_hi": worst.regret_hi,
            "m_regret": worst.width_mult,
            "noise": lo.noise, "n_widths": len(g),
        })
    return pd.DataFrame(rows)


def verdict_table(best: pd.DataFrame, grid_ratio: float | None = None, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """`optimum_shift` plus ``verdict``, ``next_step`` and ``text`` (the one-line verdict).

    ``transfers``: the 90% interval of the shift lies within ``±tolerance`` octaves per width doubling
    and the regret's interval does not lie above one seed's noise; ``does not transfer``: the
    interval lies entirely outside; ``inconclusive``: otherwise, with ``next_step`` (the cheapest run
    to decide); and ``edge of grid``, ``no stable run``, ``one width``.
    """
    if not tolerance > 0:
        raise ValueError(f"tolerance: must be > 0 octaves per width doubling, got {tolerance!r}")
    shift = optimum_shift(best, grid_ratio)
    out = [_verdict(r, best[best.arm == r.arm].sort_values("width_mult"), tolerance) for r in shift.itertuples()]
    return shift.assign(verdict=[v for v, _, _ in out], next_step=[n for _, n, _ in out], text=[t for _, _, t in out])


def verdicts(best: pd.DataFrame, grid_ratio: float | None = None, tolerance: float = TOLERANCE) -> list[str]:
    """One line per arm (`verdict_table`'s ``text``), e.g. ``independent: +0.05 ± 0.12 octaves per
    width doubling (90% CI −0.07…+0.17) from 1× to 4× — transfers; regret 0.002 (90% CI 0…0.01)``."""
    return verdict_table(best, grid_ratio, tolerance).text.tolist()


def _verdict(r, rows: pd.DataFrame, tol: float) -> tuple[str, str, str]:
    """``(verdict, next_step, text)`` of one arm's `optimum_shift` row ``r``."""
    span = f"from {r.m_min:g}× to {r.m_max:g}×"
    if r.any_unstable:
        bad = ", ".join(f"{m:g}×" for m in rows.width_mult[rows.lr_grid.isna()])
        return "no stable run", "", f"{r.arm}: no stable LR at {bad} — no stable run"
    if r.n_widths < 2:
        return "one width", "", f"{r.arm}: only width {r.m_min:g}× was run — one width"
    if r.any_edge:
        step = "; ".join(f"extend the grid {e} than {lr:.2g} at {m:g}×" for m, e, lr in
                         zip(rows.width_mult[rows.at_edge], rows.extend[rows.at_edge], rows.lr_fit[rows.at_edge]))
        return "edge of grid", step, f"{r.arm}: optimum at the edge of the grid — edge of grid ({step})"
    lo, hi = r.per_doubling_lo, r.per_doubling_hi
    line = (f"{r.arm}: {_pm(r.per_doubling)} ± {(hi - lo) / 2:.2f} octaves per width doubling (90% CI "
            f"{_pm(lo)}…{_pm(hi)}) {span}")
    regret = f"regret {_g(r.max_regret)} (90% CI {_g(r.regret_lo)}…{_g(r.regret_hi)})"
    if lo > tol or hi < -tol:
        return "does not transfer", "", f"{line} — does not transfer; {regret}"
    if -tol <= lo and hi <= tol and not r.regret_lo > r.noise:
        return "transfers", "", f"{line} — transfers; {regret}"
    if -tol <= lo and hi <= tol:
        step = (f"the shift is within ±{tol:g}, but reusing the {r.m_min:g}× LR costs {_g(r.max_regret)} at "
                f"{r.m_regret:g}×, more than one seed's noise {_g(r.noise)}")
    else:
        step = _next_step(r, rows, tol)
    return "inconclusive", step, f"{line} — inconclusive ({step}); {regret}"


def _next_step(r, rows: pd.DataFrame, tol: float) -> str:
    """The cheapest run to decide: a finer grid where too few points were fitted, else more seeds
    (the interval shrinks as 1/√seeds) at the LRs around the optima of the extreme widths."""
    ends = rows.iloc[[0, -1]]
    few = rows[rows.n_fit < MIN_POINTS]
    if len(few):
        m = few.iloc[0]
        return f"a finer LR grid around {m.lr_fit:.2g} at {m.width_mult:g}× ({m.n_fit} stable points to fit)"
    margin = abs(abs(r.per_doubling) - tol)
    need = ends.n_seeds.min() * ((r.per_doubling_hi - r.per_doubling_lo) / 2 / max(margin, 1e-9)) ** 2
    now = int(ends.n_seeds.min())
    where = ", ".join(f"LRs {_lrs(e)} at {e.width_mult:g}×" for e in ends.itertuples())
    if need > 16 * now:
        return f"the shift lies near ±{tol:g}: even 16× the seeds (now {now}) at {where} may not decide it"
    return f"~{int(np.ceil(need))} seeds (now {now}) at {where}"


def _lrs(e) -> str:
    """The LRs of the grid's spacing, through ``lr_grid``, within one step of the interval ``lr_lo…lr_hi``."""
    ratio = e.grid_ratio if e.grid_ratio > 1 else 2.0
    k = np.log(np.array([e.lr_lo / ratio, e.lr_hi * ratio]) / e.lr_grid) / np.log(ratio)
    return ", ".join(f"{e.lr_grid * ratio**j:.2g}" for j in np.arange(np.ceil(k[0] - 1e-9), np.floor(k[1] + 1e-9) + 1))


def _pm(x: float) -> str:
    """``+0.05`` / ``−0.07`` (a true minus sign), never ``−0.00``."""
    text = f"{x:+.2f}"
    return "+" + text[1:] if float(text) == 0 else text.replace("-", "−")


def _g(x: float) -> str:
    """A loss difference to 2 significant digits; ``0`` below 1e-4."""
    return "nan" if not np.isfinite(x) else "0" if abs(x) < 1e-4 else f"{x:.2g}"
