"""Does the LR transfer? Best LR per (arm, width), its shift across widths, one-line verdicts.

Input is the ``results`` frame of a sweep (docs/study.md): one row per planned run with
``phase, arm, width_mult, lr, seed, status`` and the loss metric. A run that ``diverged`` or
``failed``, or whose metric is NaN, counts as loss ``+inf``; ``pending`` runs are left out (not
yet known). Seeds are averaged, so one unstable seed makes its LR unstable (``+inf``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

UNSTABLE = ("diverged", "failed")


def select_phase(frame: pd.DataFrame, phase: int | str | None) -> pd.DataFrame:
    """Rows of ``phase`` (compared as text: 2 == "2"; "dynamics"); all rows for ``None``."""
    if phase is None or "phase" not in frame:
        return frame
    return frame[frame["phase"].astype(str) == str(phase)]


def lr_curves(results: pd.DataFrame, metric: str = "final_train_loss", phase: int | str | None = 2) -> pd.DataFrame:
    """Loss vs LR per (arm, width_mult): mean over seeds, ``+inf`` where any seed was unstable.

    Columns: ``arm, width_mult, lr, loss, loss_std, n_seeds, n_unstable`` (+ ``width`` when
    given), sorted by arm, width and LR. ``loss_std`` is over the stable seeds.
    """
    for column in ("arm", "width_mult", "lr", metric):
        if column not in results:
            raise ValueError(f"results: has no {column!r} column")
    df = select_phase(results, phase)
    if "status" in df:
        df = df[df["status"].astype(str) != "pending"]
    loss = pd.to_numeric(df[metric], errors="coerce").astype(float)
    bad = ~np.isfinite(loss)
    if "status" in df:
        bad |= df["status"].astype(str).isin(UNSTABLE)
    df = df.assign(_loss=loss.where(~bad, np.inf), _bad=bad)
    keys = ["arm", "width_mult", "lr"]
    out = df.groupby(keys, sort=True).agg(
        loss=("_loss", "mean"), n_seeds=("_loss", "size"), n_unstable=("_bad", "sum"),
        loss_std=("_loss", lambda s: s[np.isfinite(s)].std(ddof=0) if np.isfinite(s).any() else np.nan),
    ).reset_index()
    if "width" in df:
        out = out.merge(df.groupby(["arm", "width_mult"])["width"].first().reset_index(), on=["arm", "width_mult"])
    out["n_unstable"] = out["n_unstable"].astype(int)
    return out


def vertex(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Vertex ``(x*, y*)`` and curvature ``a`` of the parabola through three points (Newton form)."""
    d01 = (y[1] - y[0]) / (x[1] - x[0])
    a = ((y[2] - y[1]) / (x[2] - x[1]) - d01) / (x[2] - x[0])
    if not a > 0:
        return np.nan, np.nan, a
    xs = 0.5 * (x[0] + x[1]) - d01 / (2 * a)
    return xs, y[0] + d01 * (xs - x[0]) + a * (xs - x[0]) * (xs - x[1]), a


def _best_one(curve: pd.DataFrame) -> dict:
    """Grid argmin and its quadratic refinement in log2(LR) for one sorted loss-vs-LR curve."""
    lr, loss = curve["lr"].to_numpy(float), curve["loss"].to_numpy(float)
    ratio = float(np.exp(np.median(np.diff(np.log(lr))))) if len(lr) > 1 else np.nan
    row = {"n_lrs": len(lr), "grid_ratio": ratio, "lr_grid": np.nan, "loss_grid": np.inf,
           "lr_fit": np.nan, "loss_fit": np.inf, "fit": False, "at_edge": False}
    if not np.isfinite(loss).any():
        return row
    i = int(np.argmin(loss))  # first of equal minima
    row.update(lr_grid=lr[i], loss_grid=loss[i], lr_fit=lr[i], loss_fit=loss[i], at_edge=i in (0, len(lr) - 1))
    if row["at_edge"] or not np.isfinite(loss[i - 1 : i + 2]).all():
        return row  # an unstable neighbour brackets the optimum: keep the grid point
    xs, ys, _ = vertex(np.log2(lr[i - 1 : i + 2]), loss[i - 1 : i + 2])
    if np.isfinite(xs):
        row.update(lr_fit=float(2.0**xs), loss_fit=float(ys), fit=True)
    return row


def best_lrs(results: pd.DataFrame, metric: str = "final_train_loss", phase: int | str | None = 2) -> pd.DataFrame:
    """Best LR per (arm, width_mult), refined by a parabola in log2(LR), and the transfer regret.

    Columns: ``arm, width_mult, [width,] lr_grid, loss_grid`` (grid argmin of the seed-mean
    loss), ``lr_fit, loss_fit`` (vertex of the parabola through the minimum and its two
    neighbours in log2 LR; the grid values when ``fit`` is False: minimum at the grid edge
    (``at_edge``), an unstable neighbour, or no convexity), ``n_lrs, grid_ratio`` (median ratio
    of neighbouring LRs), ``transfer_lr`` (the grid LR best at the arm's smallest width, or the
    nearest LR of this width's grid), ``loss_at_transfer`` and ``regret = loss_at_transfer -
    loss_grid`` (0 at the base width; ``inf`` if ``transfer_lr`` is unstable here).
    """
    curves = lr_curves(results, metric, phase)
    rows = []
    for (arm, m), curve in curves.groupby(["arm", "width_mult"], sort=True):
        extra = {"width": curve["width"].iloc[0]} if "width" in curve else {}
        rows.append({"arm": arm, "width_mult": m, **extra, **_best_one(curve)})
    best = pd.DataFrame(rows)
    if best.empty:
        return best
    best = pd.concat([_regret(g, curves[curves.arm == arm]) for arm, g in best.groupby("arm", sort=True)])
    return best.reset_index(drop=True)


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
    """Per arm: how far the fitted optimum moves from the smallest to the largest width.

    Columns: ``arm, m_min, m_max, lr_min, lr_max`` (fitted optima), ``shift_log2`` (log2 of
    their ratio), ``per_doubling`` (``shift_log2 / log2(m_max/m_min)``), ``grid_steps``
    (``shift_log2 / log2(grid_ratio)``; default: the arm's median ``grid_ratio``), ``any_edge``
    (an optimum at a grid edge at some width), ``any_unstable`` (a width with no stable LR),
    ``max_regret`` and ``n_widths``. With one width the shifts are NaN.
    """
    rows = []
    for arm, g in best.groupby("arm", sort=False):
        g = g.sort_values("width_mult")
        lo, hi = g.iloc[0], g.iloc[-1]
        ratio = grid_ratio or (float(np.nanmedian(g.grid_ratio)) if g.grid_ratio.notna().any() else np.nan)
        doublings = np.log2(hi.width_mult / lo.width_mult)
        shift = float(np.log2(hi.lr_fit / lo.lr_fit)) if len(g) > 1 else np.nan
        rows.append({
            "arm": arm, "m_min": lo.width_mult, "m_max": hi.width_mult, "lr_min": lo.lr_fit, "lr_max": hi.lr_fit,
            "shift_log2": shift, "per_doubling": shift / doublings if doublings > 0 else np.nan,
            "grid_steps": shift / np.log2(ratio) if ratio and ratio > 1 else np.nan,
            "any_edge": bool(g.at_edge.any()), "any_unstable": bool(g.lr_grid.isna().any()),
            "max_regret": float(g.regret.max()), "n_widths": len(g),
        })
    return pd.DataFrame(rows)


def verdict_table(best: pd.DataFrame, grid_ratio: float | None = None, threshold: float = 0.5) -> pd.DataFrame:
    """``optimum_shift`` plus ``verdict`` (transfers | does not transfer | edge of grid | one width |
    no stable run | unknown) and ``text``, the one-line verdict. Transfers when ``|grid_steps| <= threshold``."""
    shift = optimum_shift(best, grid_ratio)
    verdict, text = [], []
    for r in shift.itertuples():
        span = f"from {r.m_min:g}× to {r.m_max:g}×"
        per = f"{signed(r.per_doubling, 2)} octaves per width doubling"
        moves = f"optimum moves {signed(r.grid_steps)} grid steps {span} ({per})"
        regret = f"; max regret {r.max_regret:.3g}"
        if r.any_unstable or (not np.isfinite(r.shift_log2) and r.n_widths > 1):
            v, t = "no stable run", f"no stable LR at some width {span}"
        elif r.n_widths < 2:
            v, t = "one width", f"only width {r.m_min:g}× was run"
            regret = ""
        elif not np.isfinite(r.grid_steps):
            v, t = "unknown", f"optimum moves {signed(r.shift_log2, 2)} octaves {span}; no LR grid to judge it by"
        elif r.any_edge:
            v, t = "edge of grid", f"{moves} — optimum at the edge of the grid, cannot be trusted (extend it)"
        elif abs(r.grid_steps) <= threshold:
            v, t = "transfers", f"{moves} — transfers"
        else:
            v, t = "does not transfer", f"{moves} — does not transfer"
        verdict.append(v)
        text.append(f"{r.arm}: {t}{regret}")
    return shift.assign(verdict=verdict, text=text)


def verdicts(best: pd.DataFrame, grid_ratio: float | None = None, threshold: float = 0.5) -> list[str]:
    """One line per arm (`verdict_table`'s ``text``), e.g.
    ``independent: optimum moves +0.3 grid steps from 1× to 4× (…) — transfers; max regret 0.004``."""
    return verdict_table(best, grid_ratio, threshold).text.tolist()
