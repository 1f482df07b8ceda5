"""The plan: one row per planned run, and the LR pick that links the two phases of Appendix G.2.

Phase 1 (per arm, at the base width): one global LR for every parameter, ``optim.lr =
optim.fixed_lr = η``. `analysis.phase1_picks` picks each arm's lowest mean `final_train_loss`, which phase 2
freezes as ``optim.fixed_lr`` (input, gain and bias parameters) while it sweeps ``optim.lr`` — the
base LR of the hidden and output layers, scaled by the arm's `lr_scaling` — across all widths.
A run is identified by its config hash only: rows whose configs are equal share one run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from lrtransfer.config import OptimConfig, ScheduleConfig, TrialConfig, apply_overrides, validate
from lrtransfer.phases import Phase
from lrtransfer.records import atomic
from lrtransfer.scaling import expected_shift
from lrtransfer.sweep.spec import DYNAMICS_ARM, SweepSpec, width_of

PLAN_COLUMNS = ("phase", "arm", "width_mult", "width", "lr", "fixed_lr", "seed", "config_hash", "folder")
PLAN_FILE = "plan.csv"


@dataclass(frozen=True)
class PlannedRun:
    """One point of the sweep: its `phase`; `fixed_lr` the effective LR of the input, gain and bias
    parameters; `config` the resolved config (a built-in run, or a trial of a user objective)."""

    phase: Phase
    arm: str
    width_mult: float
    lr: float
    seed: int
    config: TrialConfig

    @cached_property
    def config_hash(self) -> str:
        return self.config.hash()

    @property
    def folder(self) -> str:
        """The run folder, relative to the sweep folder."""
        return f"runs/{self.config_hash}"

    def row(self) -> dict[str, Any]:
        optim = self.config.optim
        return {"phase": self.phase, "arm": self.arm, "width_mult": self.width_mult, "width": self.config.model.width,
                "lr": self.lr, "fixed_lr": optim.fixed_lr or optim.lr, "seed": self.seed,
                "config_hash": self.config_hash, "folder": self.folder}


def phase1(spec: SweepSpec) -> list[PlannedRun]:
    """Phase 1: per arm, the global LR (every parameter) at the base width. The Figure 6 arms
    (``warmup_arms``) have none: they share the frozen LR of `warmup_reference` (Appendix G.3.5)."""
    raw, grid = spec.base.raw(), spec.phase1_lrs or spec.lrs
    return [_planned(raw, Phase.ONE, arm, overrides, 1.0, lr, lr, seed)
            for arm, overrides in spec.arm_overrides().items() if arm not in spec.warmup_arms
            for lr in grid for seed in spec.seeds]


def frozen_lrs(spec: SweepSpec, picks: Mapping[str, float]) -> dict[str, float]:
    """Phase 2's frozen LR per arm: its phase-1 pick; the warmup arms share the pick of
    `warmup_reference` (G.3.5: one value for every arm of Figure 6). Arms without one are left out."""
    frozen = dict(picks)
    reference = warmup_reference(spec)
    if reference in picks:
        frozen.update(dict.fromkeys(spec.warmup_arms, picks[reference]))
    return frozen


def warmup_reference(spec: SweepSpec) -> str | None:
    """The arm whose frozen LR the warmup arms share: ``independent`` if swept, else the first rule."""
    rules = [r for r in spec.arm_overrides() if r not in spec.warmup_arms]
    return "independent" if "independent" in rules else (rules[0] if rules else None)


def phase2(spec: SweepSpec, fixed_lrs: Mapping[str, float | None],
           lrs: Mapping[tuple[str, float], Sequence[float]] | None = None) -> list[PlannedRun]:
    """Phase 2 (or the one phase): the base LR of the width-scaling layers at every width, with each
    arm's `fixed_lrs[arm]` frozen (None: as configured). Arms missing from `fixed_lrs` are left out.
    `lrs`: the LRs of each ``(arm, m)`` (spec ``bracket``: those run so far); default the whole grid."""
    raw = spec.base.raw()
    return [_planned(raw, Phase.TWO, arm, overrides, m, lr, fixed_lrs[arm], seed)
            for arm, overrides in spec.arm_overrides().items() if arm in fixed_lrs
            for m in spec.widths for lr in (spec.lrs if lrs is None else lrs.get((arm, m), ()))
            for seed in spec.seeds]


def expected_shifts(spec: SweepSpec) -> dict[str, float]:
    """Each arm's expected shift of the best base LR, octaves per width doubling
    (`scaling.expected_shift` of the arm's LR and weight-decay rules)."""
    raw = spec.base.raw()
    return {arm: expected_shift(c.optim.lr_scaling, c.optim.wd_scaling)
            for arm, overrides in spec.arm_overrides().items()
            for c in [validate(apply_overrides(raw, overrides))]}


def first_brackets(spec: SweepSpec, centers: Mapping[str, float],
                   skip: Sequence[tuple[str, float]] = ()) -> dict[tuple[str, float], list[float]]:
    """The first round of an adaptive phase 2 (spec ``bracket``): each ``(arm, m)`` curve's `bracket`
    around its arm's centre moved by its `expected_shifts`; arms without a centre and `skip` left out."""
    shifts = expected_shifts(spec)
    return {(arm, m): bracket(spec.lrs, center, shifts[arm], m, spec.bracket)
            for arm, center in centers.items() for m in spec.widths if (arm, m) not in skip}


def bracket(grid: Sequence[float], center: float, shift: float, m: float, k: int) -> list[float]:
    """The `k` neighbouring LRs of `grid` around the expected best LR at width m, ``center ·
    m^shift`` (nearest in log LR; the lower of two as near), moved inward at the grid's ends."""
    grid = sorted(grid)
    target = math.log2(center) + shift * math.log2(m)
    nearest = min(range(len(grid)), key=lambda i: (abs(math.log2(grid[i]) - target), i))
    start = min(max(nearest - (k - 1) // 2, 0), max(len(grid) - k, 0))
    return grid[start:start + k]


def refinement(spec: SweepSpec, arm: str, m: float, lrs: Sequence[float], seed: int,
               fixed_lr: float | None) -> list[PlannedRun]:
    """Phase-2 runs of one more ``seed`` at ``lrs`` of ``arm`` at width m (the refine stage: seeds
    where they decide a verdict)."""
    overrides = spec.arm_overrides()[arm]
    return [_planned(spec.base.raw(), Phase.TWO, arm, overrides, m, lr, fixed_lr, seed) for lr in lrs]


def dynamics(spec: SweepSpec, lr: float) -> list[PlannedRun]:
    """The Figure 4/16 runs (Appendix G.3.3): no muP, standard weight decay and one LR `lr` for
    every parameter, so (η, λ) is identical at every width."""
    overrides = {"optim.lr_scaling": "none", "optim.wd_scaling": "standard"}
    raw = spec.base.raw()
    return [_planned(raw, Phase.DYNAMICS, DYNAMICS_ARM, overrides, m, lr, lr, seed)
            for m in spec.widths for seed in spec.seeds]


def figure5_partner(spec: SweepSpec, m: float, lr: float, fixed_lr: float | None) -> list[PlannedRun]:
    """The independent run of the Figure 5 pair (Appendix G.3.4) at width m and base LR `lr` (the
    standard arm's best over m: the same LR-WD product), with the independent arm's frozen LR. It
    is a phase-2 run of that arm, shared with phase 2 when its LR is on the grid."""
    overrides = spec.arm_overrides()["independent"]
    return [_planned(spec.base.raw(), Phase.DYNAMICS, "independent", overrides, m, lr, fixed_lr, seed)
            for seed in spec.seeds]


def canonical(config: TrialConfig) -> TrialConfig:
    """The same run with its 1×-irrelevant fields written one way, so equal runs share one hash.

    At m = 1 every width rule is a no-op: the LR divisor is 1 (`mup`, `sqrt`, `none` alike),
    `independent` weight decay equals `standard`, and the extra warmups of Eq 14/15 are exactly 1.
    So, e.g., the `standard` and `independent` arms share their 1× runs.
    """
    sc = config.schedule
    if config.model.width_mult != 1 or sc.extra_warmup_width_mult not in (None, 1):
        return config
    data = config.to_dict()
    data["optim"]["lr_scaling"] = OptimConfig.model_fields["lr_scaling"].default
    if data["optim"]["wd_scaling"] != "none":
        data["optim"]["wd_scaling"] = OptimConfig.model_fields["wd_scaling"].default
    for name in ("extra_warmup", "extra_warmup_length", "extra_warmup_width_mult"):
        data["schedule"][name] = ScheduleConfig.model_fields[name].default
    return validate(data)


def plan_frame(runs: list[PlannedRun]) -> pd.DataFrame:
    """The plan as a DataFrame, one row per planned run (`PLAN_COLUMNS`)."""
    return pd.DataFrame([r.row() for r in runs], columns=list(PLAN_COLUMNS))


def write_plan(out: Path, runs: list[PlannedRun]) -> Path:
    """Write `out/plan.csv` (atomically: a reader never sees half a plan)."""
    return atomic.write_text(out / PLAN_FILE, plan_frame(runs).to_csv(index=False))  # floats: shortest round trip


class PlanError(ValueError):
    """A sweep folder's plan.csv cannot be read (damaged, or edited by hand); the message names it."""


def read_plan(out: Path) -> pd.DataFrame:
    """`out/plan.csv` with its column types (phase: a `Phase`'s text); `PlanError` naming the file
    if it is damaged (a re-run of the sweep rewrites it)."""
    path = Path(out) / PLAN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"dir: {out} holds no {PLAN_FILE}; is it a sweep folder (lrtransfer sweep --out)?")
    fix = "re-run `lrtransfer sweep` with its spec to rewrite it"
    try:
        # floats exact; strings as written (an arm named NA or null is not a missing value)
        df = pd.read_csv(path, dtype={"phase": str, "arm": str, "config_hash": str, "folder": str},
                         keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise PlanError(f"plan: {path} cannot be read ({str(err).strip().splitlines()[0]}); {fix}") from None
    if missing := [c for c in PLAN_COLUMNS if c not in df]:
        raise PlanError(f"plan: {path} has no column {missing[0]!r} (damaged?); {fix}")
    try:
        if bad := sorted(set(df["phase"]) - set(Phase)):
            raise ValueError(f"phase {bad[0]!r} is not one of {'|'.join(Phase)}")
        return df.astype({"width_mult": "float64", "width": "int64", "lr": "float64", "fixed_lr": "float64",
                          "seed": "int64"})
    except (ValueError, TypeError, AttributeError) as err:  # an empty or non-numeric cell
        raise PlanError(f"plan: {path} holds a value of the wrong type ({err}); {fix}") from None


def _planned(raw: dict[str, Any], phase: Phase, arm: str, overrides: Mapping[str, Any], m: float,
             lr: float, fixed_lr: float | None, seed: int) -> PlannedRun:
    """Resolve one point: the arm's overrides, then the plan's width, LRs and seed."""
    base_width = validate(apply_overrides(raw, overrides)).model.base_width
    planned = {"model.width": width_of(base_width, m, "widths"), "optim.lr": lr, "run.seed": seed}
    if fixed_lr is not None:
        planned["optim.fixed_lr"] = fixed_lr
    config = canonical(validate(apply_overrides(raw, {**overrides, **planned})))
    return PlannedRun(phase=phase, arm=arm, width_mult=float(m), lr=float(lr), seed=int(seed), config=config)
