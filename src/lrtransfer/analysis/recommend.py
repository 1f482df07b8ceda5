"""What to use at the target width: the base LR with its 90% interval, per-role LR and λ, timescales.

Each arm's optimum moves along its `fit.ShiftLine` (log2 best LR against log2 width multiplier);
the recommendation extrapolates that line to the target width, with the interval from the line of
every joint bootstrap draw of the fitted optima. Where the arm transfers the line is flat within
the tolerance, and the interval says how flat; where it does not, the measured shift is carried
on, and the warning says so. The arm's rule (an `OptimConfig`) turns the base LR into each role's
η and λ (Eq 6-8), and ``2·mean(η_t)·λ·T`` counts the weight-decay timescales of the hidden layers
at the target (Eq 33-36: the weight norm relaxes to equilibrium as ``(1 − ηλ)^(2t)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lrtransfer.analysis.fit import ShiftLine
from lrtransfer.optim import OptimConfig
from lrtransfer.roles import ROLES

FAR = 2.0  # doublings beyond the widest measured width from which the extrapolation is flagged
FEW_TIMESCALES = 5.0  # fewer weight-decay timescales than this: the equilibrium is not reached


@dataclass(frozen=True)
class ArmRule:
    """How an arm trains: its optimizer rules, and, when known, its per-step LR multipliers."""

    optim: OptimConfig | None
    multipliers: np.ndarray | None = None
    source: str = ""


def recommend_arm(arm: str, line: ShiftLine | None, verdict: pd.Series, rule: ArmRule, width_mult: float,
                  steps: int | None = None) -> dict:
    """One arm's recommendation at ``width_mult`` (relative to the base width): a dict of
    ``lr, lr_lo, lr_hi`` (base LR and its 90% interval), ``doublings_beyond`` (log2 of the target
    over the widest measured multiplier), ``weight_decay, lr_scaling, wd_scaling``, ``hidden_lr,
    hidden_wd``, ``timescales`` (NaN when the run length is unknown), ``warnings`` and ``call``."""
    row = {"arm": arm, "verdict": verdict.get("verdict", ""), "width_mult": width_mult}
    if line is None:
        return {**row, "lr": math.nan, "lr_lo": math.nan, "lr_hi": math.nan, "doublings_beyond": math.nan,
                "warnings": f"{arm}: no recommendation — no optimum at two widths ({row['verdict'] or 'no verdict'})",
                "call": ""}
    x, lo, hi = line.at(math.log2(width_mult))
    beyond = math.log2(width_mult / float(verdict["m_max"]))
    row.update(lr=2.0**x, lr_lo=2.0**lo, lr_hi=2.0**hi, doublings_beyond=beyond,
               per_doubling=line.slope)
    row.update(_rule_columns(rule, row["lr"], width_mult, steps))
    row["warnings"] = "; ".join(_warnings(arm, row, verdict))
    row["call"] = _call(rule.optim, row["lr"]) if rule.optim else ""
    return row


def role_table(rule: ArmRule, lr: float, width_mult: float) -> pd.DataFrame:
    """Each role's LR and weight decay at ``width_mult`` under ``rule`` with base LR ``lr`` (Eq 6-8):
    the rows `lrtransfer.describe_groups` prints per parameter, one per role."""
    if rule.optim is None or not math.isfinite(lr):
        return pd.DataFrame(columns=["role", "width_mult", "lr", "weight_decay"])
    optim = rule.optim.model_copy(update={"lr": lr})
    rows = [{"role": role, "width_mult": width_mult, **dict(zip(("lr", "weight_decay"),
                                                                optim.hyperparams(role, width_mult)))}
            for role in ROLES]
    return pd.DataFrame(rows)


def timescales(lrs: np.ndarray, weight_decay: float) -> float:
    """``2·Σ_t η_t·λ``: how many weight-decay timescales ``1/(2ηλ)`` the per-step LRs ``lrs`` span (Eq 33)."""
    return float(2 * np.sum(lrs) * weight_decay)


def _rule_columns(rule: ArmRule, lr: float, width_mult: float, steps: int | None) -> dict:
    if rule.optim is None:
        return {"weight_decay": math.nan, "lr_scaling": "", "wd_scaling": "", "hidden_lr": math.nan,
                "hidden_wd": math.nan, "timescales": math.nan, "rule_source": rule.source}
    optim = rule.optim.model_copy(update={"lr": lr})
    hidden_lr, hidden_wd = optim.hyperparams("hidden", width_mult)
    mult = rule.multipliers
    if steps is not None:  # the schedule's shape, stretched to the target's length
        mult = np.ones(steps) if mult is None else np.interp(np.linspace(0, 1, steps), np.linspace(0, 1, len(mult)),
                                                             mult)
    count = timescales(hidden_lr * mult, hidden_wd) if mult is not None else math.nan
    return {"weight_decay": optim.weight_decay, "lr_scaling": optim.lr_scaling, "wd_scaling": optim.wd_scaling,
            "hidden_lr": hidden_lr, "hidden_wd": hidden_wd, "timescales": count, "rule_source": rule.source}


def _warnings(arm: str, row: dict, verdict: pd.Series) -> list[str]:
    out = []
    v = row["verdict"]
    if v == "does not transfer":
        out.append(f"{arm} does not transfer: this carries its measured shift of {row['per_doubling']:+.2f} octaves "
                   "per width doubling on to the target width")
    elif v not in ("transfers", ""):
        out.append(f"{arm} is {v}: the recommendation extrapolates a shift that is not pinned down")
    if row["doublings_beyond"] > FAR:
        out.append(f"the target is {2 ** row['doublings_beyond']:.3g}× the widest measured width "
                   f"({float(verdict['m_max']):g}×): {row['doublings_beyond']:.1f} doublings of extrapolation, "
                   "assuming the optimum keeps moving in a straight line in log-width")
    if math.isfinite(row.get("timescales", math.nan)) and row["timescales"] < FEW_TIMESCALES:
        out.append(f"only {row['timescales']:.1f} weight-decay timescales at the target: the weights will not "
                   "reach the equilibrium the rule relies on (Eq 33-36)")
    return out


def _call(optim: OptimConfig, lr: float) -> str:
    """A ready-to-paste `lrtransfer.param_groups` call with this base LR and the arm's rule."""
    fixed = f", fixed_lr={optim.fixed_lr:.3g}" if optim.fixed_lr is not None else ""
    decay = f", no_decay={tuple(optim.no_decay)!r}" if tuple(optim.no_decay) != ("gain",) else ""
    return (f"lrtransfer.param_groups(model, base_model, lr={lr:.3g}, weight_decay={optim.weight_decay:g}, "
            f"lr_scaling={optim.lr_scaling!r}, wd_scaling={optim.wd_scaling!r}{fixed}{decay})")
