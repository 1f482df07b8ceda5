"""One analysis of a results frame: best LRs, verdicts, shift lines and the arms' rules, computed once.

`analyze(results)` fits every curve once; figures, report notes, the sweep's picks and the
recommendation all read the same `Analysis` instead of refitting (the bootstrap is the costly part).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lrtransfer.analysis.fit import DRAWS, ShiftLine
from lrtransfer.analysis.recommend import ArmRule, recommend_arm, role_table
from lrtransfer.analysis.transfer import TOLERANCE, fit_curves, lr_curves, verdict_table
from lrtransfer.config import validate
from lrtransfer.optim import OptimConfig
from lrtransfer.phases import Phase
from lrtransfer.scaling import WD_RULES


@dataclass(frozen=True)
class Recommendation:
    """`Analysis.recommend`'s answer: one row per arm (``table``) and each arm's per-role LR and λ
    (``roles``: ``arm, role, width_mult, lr, weight_decay``)."""

    width: float | None
    width_mult: float
    steps: int | None
    table: pd.DataFrame
    roles: pd.DataFrame

    def text(self) -> str:
        """The recommendation as lines for a terminal: per arm, the LR with its interval, the role
        table, the timescales, the warnings and the `param_groups` call."""
        target = f"width {self.width:g} ({self.width_mult:g}× the base)" if self.width else f"{self.width_mult:g}×"
        lines = [f"Recommendation at {target}" + (f", {self.steps} steps" if self.steps else "") + ":"]
        for r in self.table.itertuples():
            lines.append("")
            if not math.isfinite(r.lr):
                lines.append(f"{r.arm}: {r.warnings}")
                continue
            lines.append(f"{r.arm} ({r.verdict}): base LR {r.lr:.3g} (90% CI {r.lr_lo:.3g}…{r.lr_hi:.3g}), "
                         f"{r.doublings_beyond:+.1f} doublings beyond the widest measured width")
            roles = self.roles[self.roles.arm == r.arm]
            if len(roles):
                lines += ["  " + line for line in roles.drop(columns="arm").to_string(index=False).splitlines()]
            if math.isfinite(r.timescales):
                lines.append(f"  hidden layers: η = {r.hidden_lr:.3g}, λ = {r.hidden_wd:.3g}: "
                             f"{r.timescales:.1f} weight-decay timescales (Eq 33-36)")
            lines += [f"  warning: {w}" for w in r.warnings.split("; ") if w]
            if r.call:
                lines.append(f"  {r.call}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Analysis:
    """A results frame analysed once: ``curves`` (`lr_curves`), ``best`` (`best_lrs`), ``table``
    (`verdict_table`), ``lines`` (each arm's `ShiftLine`) and ``rules`` (each arm's `ArmRule`)."""

    results: pd.DataFrame
    curves: pd.DataFrame
    best: pd.DataFrame
    table: pd.DataFrame
    lines: dict[str, ShiftLine]
    rules: dict[str, ArmRule] = field(default_factory=dict)

    @property
    def verdicts(self) -> list[str]:
        return list(self.table["text"]) if "text" in self.table else []

    def base_width(self) -> float | None:
        """The width of multiplier 1, when the frame has widths."""
        if "width" not in self.best or self.best["width"].isna().all():
            return None
        ratios = (self.best["width"].astype(float) / self.best["width_mult"].astype(float)).dropna().unique()
        return float(np.median(ratios)) if len(ratios) else None

    def recommend(self, width: float | None = None, *, width_mult: float | None = None,
                  steps: int | None = None) -> Recommendation:
        """Base LR (90% interval), per-role LR and λ and weight-decay timescales at the target
        ``width`` (or ``width_mult``, relative to the base width) for every arm; ``steps``: the
        target run's length (default: the arms' own, where known)."""
        if (width is None) == (width_mult is None):
            raise ValueError("width: give the target width or width_mult, one of them")
        if width is not None:
            base = self.base_width()
            if base is None:
                raise ValueError("width: the results have no widths, only multipliers; give width_mult instead")
            if not width > 0:
                raise ValueError(f"width: must be > 0, got {width!r}")
            width_mult = width / base
        if not width_mult > 0:
            raise ValueError(f"width_mult: must be > 0, got {width_mult!r}")
        if steps is not None and not steps >= 1:
            raise ValueError(f"steps: must be >= 1, got {steps!r}")
        rows, roles = [], []
        for arm in sorted(set(self.best["arm"])) if len(self.best) else []:
            verdict = self.table.set_index("arm").loc[arm] if arm in set(self.table.get("arm", [])) else pd.Series()
            rule = self.rules.get(arm, ArmRule(None))
            row = recommend_arm(arm, self.lines.get(arm), verdict, rule, width_mult, steps)
            rows.append(row)
            roles.append(role_table(rule, row["lr"], width_mult).assign(arm=arm))
        roles = pd.concat(roles, ignore_index=True) if roles else pd.DataFrame()
        return Recommendation(width, width_mult, steps, pd.DataFrame(rows),
                              roles[["arm", *[c for c in roles.columns if c != "arm"]]] if len(roles) else roles)


def analyze(results: pd.DataFrame, metric: str = "final_train_loss", phase: Phase | int | str | None = Phase.TWO, *,
            draws: int = DRAWS, seed: int = 0, tolerance: float = TOLERANCE,
            rules: dict[str, ArmRule] | None = None) -> Analysis:
    """Fit and judge every curve of ``results`` once (`best_lrs`, `verdict_table`); ``rules``
    (default: read from the runs' configs, else the arm's name when it is a weight-decay rule)."""
    curves = lr_curves(results, metric, phase)
    best, lines = fit_curves(curves, draws=draws, seed=seed)
    table = verdict_table(best, tolerance=tolerance) if not best.empty else pd.DataFrame(columns=["arm", "text"])
    return Analysis(results, curves, best, table, lines, rules if rules is not None else arm_rules(results, phase))


def arm_rules(results: pd.DataFrame, phase: Phase | int | str | None = Phase.TWO) -> dict[str, ArmRule]:
    """Each arm's `ArmRule`: from its widest run's config (``config`` column) when there is one,
    else from ``wd_scaling, weight_decay`` (and ``lr_scaling``) columns, else unknown (the
    recommendation then gives the base LR alone; see `named_rules`)."""
    from lrtransfer.analysis.transfer import select_phase

    rules = {}
    frame = select_phase(results, phase)
    for arm, runs in frame.groupby("arm", sort=True):
        rules[str(arm)] = _from_config(runs) or _from_columns(runs) or ArmRule(None)
    return rules


def _from_config(runs: pd.DataFrame) -> ArmRule | None:
    if "config" not in runs:
        return None
    configs = [c for c in runs.sort_values("width_mult")["config"] if isinstance(c, dict)]
    if not configs:
        return None
    cfg = validate(configs[-1])
    mult = cfg.lr_multipliers()
    return ArmRule(cfg.optim, None if mult is None else np.asarray(mult, float), "the runs' configs")


def _from_columns(runs: pd.DataFrame) -> ArmRule | None:
    if "wd_scaling" not in runs or "weight_decay" not in runs:
        return None
    first = runs.iloc[0]
    if first["wd_scaling"] not in WD_RULES or not np.isfinite(float(first["weight_decay"])):
        return None
    fields = {"weight_decay": float(first["weight_decay"]), "wd_scaling": str(first["wd_scaling"])}
    if "lr_scaling" in runs:
        fields["lr_scaling"] = str(first["lr_scaling"])
    return ArmRule(OptimConfig(**fields), None, "the results' columns")


def named_rules(arms, weight_decay: float, lr_scaling: str = "mup") -> dict[str, ArmRule]:
    """Rules of arms named after a weight-decay rule (``standard``, ``independent``, ``none``) with
    base weight decay ``weight_decay`` and ``lr_scaling``: for results that carry no configs."""
    return {str(arm): ArmRule(OptimConfig(weight_decay=weight_decay, wd_scaling=arm, lr_scaling=lr_scaling), None,
                              "the arm's name") for arm in arms if arm in WD_RULES}
