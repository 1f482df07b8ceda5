"""Plain flags per layer from a coord check's tidy frame (`lrtransfer.coord_check`).

- **activation grows / shrinks with width** (mup's test): the slope of log RMS(y) against log width
  over the widths, at each of the early steps 0, 1, 2. mup's own test (``CoordCheckCase``) accepts
  an ``l1`` ratio within 1.2 between widths 1000 and 4000, i.e. |slope| ≤ log 1.2 / log 4 ≈ 0.13
  in log-log; `SLOPE` is that bound, and the worst early step is reported.
- **update grows / shrinks with width**: the same slope for the relative representation change
  ‖ΔY‖/‖Y‖ (Eq 4), which μP aims to keep width-independent. ‖ΔW‖/‖W‖ is not used: μP scales it
  as 1/√m on purpose (Eq 6).
- **alignment ratio vs √m** (Eq 5): for a layer whose fan-in grows by m from the narrowest to the
  widest width, μP assumes α_W shrinks as 1/√m and α_ΔW stays put, so α_ΔW/α_W grows as √m. The
  ``*_gain_init`` columns are the measured wide/narrow ratios at the first step with a gradient at
  both widths; the assumption "stops holding" at the first measured step where the gain of the
  alignment ratio is below m^¼ (halfway between 1 and √m in log space).
- **timescales**: 2·λ·Σ_t η_t of the planned run at the narrowest and widest width (Eq 33-36).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lrtransfer.roles import SCALED_ROLES

SLOPE = math.log(1.2) / math.log(4)  # mup's tolerance: ×1.2 over a 4× width change
EARLY = (0, 1, 2)


def slopes(frame: pd.DataFrame, column: str) -> pd.Series:
    """Least-squares slope of log ``column`` against log width, per (layer, step); NaN with < 2 widths."""
    df = frame.loc[np.isfinite(frame[column]) & (frame[column] > 0), ["layer", "step", "width", column]]
    df = df.assign(x=np.log(df["width"]), y=np.log(df[column]))
    df = df.assign(xy=df.x * df.y, xx=df.x * df.x)
    g = df.groupby(["layer", "step"], sort=False)
    n, s = g.size(), g[["x", "y", "xy", "xx"]].sum()
    den = n * s.xx - s.x**2
    return ((n * s.xy - s.x * s.y) / den.where((n >= 2) & (den > 0))).rename(column)


def _worst(slope: pd.Series, steps) -> pd.Series:
    """Per layer, the slope of largest magnitude among ``steps`` (NaN where none is defined)."""
    s = slope[slope.index.get_level_values("step").isin(steps)].dropna()
    if s.empty:
        return pd.Series(dtype=float)
    return s.groupby(level="layer", sort=False).agg(lambda v: v.iloc[np.argmax(np.abs(v.to_numpy()))])


def _verdict(slope: float) -> str:
    if not np.isfinite(slope):
        return "n/a"
    return "grows" if slope > SLOPE else ("shrinks" if slope < -SLOPE else "stable")


def flags(frame: pd.DataFrame, timescales: pd.DataFrame) -> pd.DataFrame:
    """One row per module (model order): activation and update slopes and verdicts, the alignment
    ratio against √m (Eq 5) and the planned run's weight-decay timescales at the narrowest and widest width."""
    narrow, wide = frame["width"].min(), frame["width"].max()
    common = frame.groupby("step")["width"].nunique()
    end = int(common[common == frame["width"].nunique()].index.max())
    layers = frame.loc[frame.width == narrow].drop_duplicates("layer").set_index("layer")[["role", "module"]]
    out = layers.copy()
    for name, column in [("activation", "activation_rms"), ("update", "relative_repr_change")]:
        s = slopes(frame, column)
        out[f"{name}_slope"] = _worst(s, EARLY).reindex(out.index)
        out[name] = out[f"{name}_slope"].map(_verdict)
        out[f"{name}_slope_end"] = _worst(s, [end]).reindex(out.index)
        out[f"{name}_end"] = out[f"{name}_slope_end"].map(_verdict)
    out = out.join(_alignment(frame, narrow, wide))
    ts = timescales.set_index(["width", "layer"])["timescales"]
    out["timescales_narrow"] = ts.xs(narrow, level="width").reindex(out.index)
    out["timescales_wide"] = ts.xs(wide, level="width").reindex(out.index)
    return out.reset_index().assign(end_step=end)


def _alignment(frame: pd.DataFrame, narrow: int, wide: int) -> pd.DataFrame:
    """Per scaled layer whose fan-in grows by m: the wide/narrow gains of α_W, α_ΔW and their ratio at the
    first step with a gradient at both widths (``alignment_step``), √m, and the first step at which the
    ratio's gain falls below m^¼ (``sqrt_m_until``; NaN: not within the check)."""
    scaled = frame.loc[frame.role.isin(SCALED_ROLES)]
    values = ["fan_in", "grad_norm", "weight_alignment", "update_alignment", "alignment_ratio"]
    mean = scaled.pivot_table(index=["layer", "step"], columns="width", values=values, dropna=False)
    rows = {}
    for layer, d in mean.groupby(level="layer", sort=False):
        d = d.droplevel("layer").sort_index()
        gain = {v: d[(v, wide)] / d[(v, narrow)] for v in values[2:]}
        m = d[("fan_in", wide)].iloc[0] / d[("fan_in", narrow)].iloc[0]
        # A step without gradient moves W only by weight decay (ΔW ∝ W, ratio 1): no evidence on Eq 5.
        usable = (d[("grad_norm", narrow)] > 0) & (d[("grad_norm", wide)] > 0) & np.isfinite(gain["alignment_ratio"])
        if m <= 1 or not usable.any():
            continue
        ratio = gain["alignment_ratio"][usable]
        first, below = ratio.index[0], ratio.index[ratio < m**0.25]
        rows[layer] = {"fan_in_mult": m, "sqrt_m": math.sqrt(m), "alignment_step": int(first),
                       **{f"{v}_gain_init": gain[v][first] for v in values[2:]},
                       "sqrt_m_at_init": bool(ratio.iloc[0] >= m**0.25),
                       "sqrt_m_until": float(below[0]) if len(below) else math.nan}
    columns = ["fan_in_mult", "sqrt_m", "alignment_step", *(f"{v}_gain_init" for v in values[2:]),
               "sqrt_m_at_init", "sqrt_m_until"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def text(flags: pd.DataFrame, timescales: pd.DataFrame, settings: dict) -> str:
    """The flags as plain-English lines: what grows or shrinks, where √m stops, the planned timescales."""
    s = settings
    lines = [f"coord check: widths {', '.join(map(str, s['widths']))} (base {s['base_width']}), {s['steps']} steps, "
             f"lr {s['lr']:g} ({s['lr_scaling']}), weight decay {s['weight_decay']:g} ({s['wd_scaling']})"]
    lines += [f"width {w}, seed {seed} diverged at step {t} (loss not finite): its later steps are missing"
              for (w, seed), t in s["diverged"].items()]
    findings = _scaling_lines(flags) + _alignment_lines(flags)
    verdicts = flags[["activation", "update", "activation_end", "update_end"]].isin(["grows", "shrinks"])
    if len(s["seeds"]) == 1 and (verdicts.any(axis=None) or flags["sqrt_m_at_init"].eq(False).any()):
        findings.append("one seed: init noise at small widths (and a readout's few rows) can cross these tolerances; "
                        "seed=[0, 1, 2] pools seeds")
    return "\n".join(lines + findings + _timescale_lines(timescales, s["planned_steps"]))


def _scaling_lines(flags: pd.DataFrame) -> list[str]:
    what = {"activation": "activation RMS", "update": "‖ΔY‖/‖Y‖"}
    lines = []
    for r in flags.itertuples():
        for kind in what:
            for when, col, label in [("", kind, "at steps 0-2"), ("_end", f"{kind}_end", f"at step {r.end_step}")]:
                verdict = getattr(r, col) if not (when and r.end_step in EARLY) else None
                if verdict in ("grows", "shrinks"):
                    slope = getattr(r, f"{kind}_slope{when}")
                    lines.append(f"{r.layer} ({r.role}, {r.module}): {kind} {verdict} with width: {what[kind]} ∝ "
                                 f"width^{slope:.2f} {label} (|slope| ≤ {SLOPE:.2f} is flat)")
    if not lines:
        lines.append(f"activations and updates: no layer grows or shrinks with width (|slope| ≤ {SLOPE:.2f})")
    return lines


def _alignment_lines(flags: pd.DataFrame) -> list[str]:
    lines, stopped = [], False
    for r in flags.dropna(subset=["alignment_ratio_gain_init"]).itertuples():
        head = (f"{r.layer} ({r.role}): alignment ratio ×{r.alignment_ratio_gain_init:.2f} from narrowest to widest "
                f"at step {int(r.alignment_step)}")
        if not r.sqrt_m_at_init:
            lines.append(f"{head}, not √m = {r.sqrt_m:.2f}: μP's Eq 5 assumption fails from the start; "
                         + _why(r.weight_alignment_gain_init, r.update_alignment_gain_init, r.sqrt_m))
            stopped = True
        elif math.isnan(r.sqrt_m_until):
            lines.append(f"{head} (√m = {r.sqrt_m:.2f}: Eq 5 holds) and it follows √m to the end of the check")
        else:
            lines.append(f"{head} (√m = {r.sqrt_m:.2f}: Eq 5 holds at init); it stops following √m at step "
                         f"{int(r.sqrt_m_until)} (below m^¼ = {r.sqrt_m**0.5:.2f})")
            stopped = True
    if stopped:
        lines.append("where the alignment ratio no longer grows as √m, μP's η/m shrinks ‖ΔY‖/‖Y‖ with width (Eq 4); "
                     "weight decay, not μP, then sets the relative update (Eq 36)")
    return lines


def _why(weight_gain: float, update_gain: float, sqrt_m: float) -> str:
    """Which half of Eq 5 failed: α_W should shrink as 1/√m, α_ΔW stay put."""
    parts = [f"α_W ×{weight_gain:.2f} (Eq 5: {1 / sqrt_m:.2f})", f"α_ΔW ×{update_gain:.2f} (Eq 5: 1)"]
    if weight_gain > sqrt_m**-0.5:
        parts.append("W is already aligned with its inputs (e.g. a zero-initialised readout)")
    if update_gain < sqrt_m**-0.5:
        parts.append("the update alignment falls with width (e.g. a batch not much smaller than the fan-in, Eq 28)")
    return "; ".join(parts)


def _timescale_lines(timescales: pd.DataFrame, planned: int) -> list[str]:
    """One line per distinct set of timescales across widths; roles that share it share the line."""
    spans: dict[tuple, list[str]] = {}
    for role, d in timescales.groupby("role", sort=False):
        per_width = d.groupby("width")["timescales"].agg(["min", "max"])
        key = tuple((w, f"{lo:.3g}" if np.isclose(lo, hi) else f"{lo:.3g}-{hi:.3g}", lo, hi)
                    for w, (lo, hi) in zip(per_width.index, per_width.to_numpy()))
        spans.setdefault(key, []).append(role)
    lines = []
    for key, roles in spans.items():
        widths, text, lo, hi = zip(*key)
        who = ", ".join(roles)
        if max(hi) == 0:
            lines.append(f"{who}: no weight decay, so nothing bounds the weight norm (Eq 37)")
            continue
        at = [f"at width {w}" for w in widths]
        where = "at every width" if len(set(text)) == 1 else ", ".join([at[0], *map(" ".join, zip(text[1:], at[1:]))])
        note = "; fewer than 1: the weights stay far from their equilibrium norm (Eq 33-34)" if min(lo) < 1 else ""
        lines.append(f"{who}: the planned {planned} steps span {text[0]} weight-decay timescales (2·η·λ·T, "
                     f"e-folds of the init's share of the weight norm) {where}{note}")
    return lines
