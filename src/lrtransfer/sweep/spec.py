"""The sweep spec: base config, widths, LR grid, weight-decay rules, extra arms, seeds, protocol.

A YAML file or a dict validated by pydantic at construction. An invalid value raises `SpecError`
naming the field (``widths[1]: must be >= 1``, ``rules[0]: 'indep' is not one of
none|standard|independent``), and every (arm, width) is resolved into a `RunConfig` up front, so a
width the model cannot take (``widths[1]: 1.25 × base_width 32 = 40 (arm standard): model: width:
40 is not divisible by head_dim=16``) fails before anything trains. See docs/study.md for the format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from lrtransfer.config import (
    ConfigError,
    Strict,
    apply_overrides,
    format_errors,
    load_yaml,
    parse_overrides,
    preset_dict,
    validate,
)
from lrtransfer.objectives.command import OBJECTIVE as COMMAND_OBJECTIVE
from lrtransfer.objectives.command import OWN_PARAMS, check_command
from lrtransfer.objectives.load import ObjectiveError, importable, load_objective
from lrtransfer.records.jsonl import jsonable
from lrtransfer.scaling import WD_RULES

RULES = WD_RULES  # each weight-decay rule is an arm of the same name
PROTOCOLS = ("two_phase", "one_phase")
DYNAMICS_ARM = "no_mup"  # the `dynamics: true` runs: same (η, λ) at every width (paper Fig 4)
PLANNED_KEYS = ("model.width", "optim.lr", "optim.fixed_lr", "run.seed")  # set by the plan, not by arms
SPEC_FILE = "sweep.yaml"  # the resolved spec, in the sweep folder


class SpecError(ConfigError):
    """A sweep spec value is invalid; the message names the field."""


def _at_least(bound: float):
    def check(v):
        if not v >= bound:
            raise ValueError(f"must be >= {bound:g}")
        return v
    return AfterValidator(check)


def _positive(v: float) -> float:
    if not (v > 0 and math.isfinite(v)):
        raise ValueError("must be a finite number > 0")
    return v


def _one_of(choices: tuple[str, ...]):
    def check(v: str) -> str:
        if v not in choices:
            raise ValueError(f"{v!r} is not one of {'|'.join(choices)}")
        return v
    return AfterValidator(check)


LR = Annotated[float, AfterValidator(_positive)]
Width = Annotated[float, _at_least(1)]
Seed = Annotated[int, _at_least(0)]
Rule = Annotated[str, _one_of(RULES)]
ProtocolName = Annotated[str, _one_of(PROTOCOLS)]


class BaseSpec(Strict):
    """The run config every sweep run starts from: exactly one source, then dotted overrides.

    The source is a built-in run config (``preset``, ``config`` file, ``inline``) or a user's
    ``objective`` (`lrtransfer.Trial`) with its ``base_width`` and free ``params``.
    """

    preset: str | None = Field(None, description="A built-in preset (`lrtransfer presets`).")
    config: Path | None = Field(None, description="A run-config YAML file (relative to the spec file).")
    inline: dict[str, Any] | None = Field(None, description="A run config written out in the spec.")
    objective: str | None = Field(None, description="A user objective 'package.module:function' (lrtransfer.Trial).")
    command: str | None = Field(None, description="A command that trains one trial, {lr}, {width}, {folder}, … and "
                                "params filled in (lrtransfer.objectives.command).")
    losses: str | None = Field(None, description="With command: the JSON-lines file, in the run folder, the "
                               "command reports its losses to (default: lrtransfer.report_loss's).")
    base_width: int | None = Field(None, gt=0, description="The objective's base width (width = m × base_width).")
    params: dict[str, Any] = Field({}, description="Free parameters handed to the objective as trial.params.")
    overrides: dict[str, Any] = Field({}, description="Dotted overrides {optim.weight_decay: 0.1} (or k=v strings).")

    @field_validator("objective")
    @classmethod
    def _importable(cls, v: str | None) -> str | None:
        if v is not None:
            load_objective(v)  # "cannot import ..." / "not a callable of one argument", at base.objective
        return v

    @field_validator("params")
    @classmethod
    def _json_data(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():  # they are hashed and written into every trial's config
            try:
                jsonable(value, key)
            except TypeError as err:
                raise ValueError(f"{err}: give numbers, strings, booleans, or lists and dicts of them") from None
        return v

    @field_validator("overrides", mode="before")
    @classmethod
    def _dotted(cls, v: Any) -> Any:
        if isinstance(v, (list, Mapping)):
            try:
                return parse_overrides(v, where="item")
            except ConfigError as err:
                raise ValueError(str(err)) from None
        return v

    @model_validator(mode="after")
    def _one_source(self) -> BaseSpec:
        if sum(x is not None for x in (self.preset, self.config, self.inline, self.objective, self.command)) != 1:
            raise ValueError("give exactly one of preset|config|inline|objective|command")
        user_code = self.objective is not None or self.command is not None
        if user_code == (self.base_width is None):
            raise ValueError("base_width: give it with objective or command (and only then)")
        if self.params and not user_code:
            raise ValueError("params: only used with objective or command")
        if self.losses is not None and self.command is None:
            raise ValueError("losses: only used with command")
        if self.command is not None and (own := [k for k in OWN_PARAMS if k in self.params]):
            raise ValueError(f"params: {own[0]!r} is a key of the command objective's own; rename it")
        if self.command is not None:
            try:
                check_command(self.command, self.params)
            except ValueError as err:
                raise ValueError(f"command: {err}") from None
        if isinstance(ref := (self.inline or {}).get("objective"), str):
            try:  # an objective written out in an inline config (a sweep's own sweep.yaml) is checked as well
                load_objective(ref)
            except ObjectiveError as err:
                raise ValueError(f"objective: {err}") from None
        return self

    def raw(self) -> dict[str, Any]:
        """The raw config dict: the source with the overrides applied (not yet validated)."""
        if self.command is not None:  # a built-in objective that runs the command
            own = {"command": self.command, **({"losses": self.losses} if self.losses else {})}
            source = {"objective": COMMAND_OBJECTIVE, "params": {**self.params, **own},
                      "model": {"width": self.base_width, "base_width": self.base_width}}
        elif self.objective is not None:
            source = {"objective": self.objective, "params": self.params,
                      "model": {"width": self.base_width, "base_width": self.base_width}}
        else:
            source = preset_dict(self.preset) if self.preset else load_yaml(self.config) if self.config else self.inline
        return apply_overrides(source, self.overrides)


class SweepSpec(Strict):
    """One LR-transfer study (docs/study.md): which runs to train, and in which protocol."""

    name: str = Field("sweep", min_length=1, description="Sweep name, recorded in the store's `sweep` column.")
    base: BaseSpec = Field(description="The base run config (preset, file or inline, plus overrides).")
    widths: list[Width] = Field([1.0], min_length=1, description="Multipliers m of model.base_width (width = m × it).")
    lrs: list[LR] = Field(min_length=1, description="Base-LR grid: a list, or {min, max, num} log-spaced.")
    rules: list[Rule] = Field(list(RULES), description="Weight-decay rules, one arm each.")
    arms: dict[str, dict[str, Any]] = Field({}, description="Extra named arms: {name: {dotted.key: value}}.")
    seeds: list[Seed] = Field([0], min_length=1, description="Seeds (run.seed) of every point.")
    protocol: ProtocolName = Field("two_phase", description="two_phase (Appendix G.2) | one_phase.")
    phase1_lrs: list[LR] | None = Field(None, min_length=1, description="Global-LR grid of phase 1 (default: lrs).")
    dynamics: bool = Field(False, description="Add the runs of Figures 4, 5, 16 at the standard arm's best "
                           "(η, λ) at the widest width (Appendix G.3.3-4).")
    warmup_arms: list[str] = Field([], description="Arms of the Figure 6 comparison (extra warmups without muP).")
    bracket: int | None = Field(None, ge=3, description="Adaptive phase 2: at each width, start from this many grid "
                                "LRs around the expected optimum (the base width's best LR moved by the arm's "
                                "scaling.expected_shift), then add the next grid LR while a curve's best is at its "
                                "edge. None: the whole grid everywhere.")
    refine: int = Field(0, ge=0, description="Refine stage: up to this many rounds, each adding one seed at the "
                        "3 LRs around the optimum of every inconclusive arm at the base and widest widths.")
    refine_budget: int = Field(24, ge=0, description="Most runs the refine stage may add in all.")
    timeout: float | None = Field(None, gt=0, description="Seconds a run may train before the local executor "
                                  "stops it and records it failed (a hung objective); None: no limit.")

    @field_validator("lrs", "phase1_lrs", mode="before")
    @classmethod
    def _grid(cls, v: Any) -> Any:
        return log_grid(v) if isinstance(v, Mapping) else v

    @field_validator("widths", "lrs", "rules", "seeds")
    @classmethod
    def _unique(cls, v: list) -> list:
        if dupes := sorted({x for x in v if v.count(x) > 1}, key=str):
            raise ValueError(f"{dupes[0]!r} is listed twice")
        return v

    @field_validator("arms")
    @classmethod
    def _arm_names(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        v = {name: parse_overrides(overrides) for name, overrides in v.items()}
        for name, overrides in v.items():
            if not name.strip():
                raise ValueError(f"{name!r}: an arm needs a name that is not blank")
            if name in (*RULES, DYNAMICS_ARM):
                raise ValueError(f"{name!r} is a reserved arm name ({'|'.join((*RULES, DYNAMICS_ARM))})")
            if fixed := [k for k in overrides if k in PLANNED_KEYS]:
                raise ValueError(f"{name}.{fixed[0]}: is set by the sweep plan, not by an arm")
        return v

    @model_validator(mode="after")
    def _configs_resolve(self) -> SweepSpec:
        if not self.arm_overrides():
            raise ValueError("rules/arms: the sweep has no arm; give at least one rule or arm")
        if self.dynamics and "standard" not in self.rules:
            raise ValueError("dynamics: needs 'standard' in rules (its best LR at the widest width sets (η, λ))")
        if unknown := [a for a in self.warmup_arms if a not in self.arms]:
            raise ValueError(f"warmup_arms: {unknown[0]!r} is not one of the spec's arms")
        if self.warmup_arms and len(self.warmup_arms) == len(self.arm_overrides()):
            raise ValueError("warmup_arms: they share the frozen LR of a rule arm, so the sweep needs one")
        raw = _checked("base", self.base.raw)
        _checked("base", validate, raw)
        for arm, overrides in self.arm_overrides().items():
            where = f"arms.{arm}" if arm in self.arms else f"rules[{self.rules.index(arm)}]"
            base_width = _checked(where, _resolve, raw, overrides).model.base_width
            for i, m in enumerate(self.widths):
                width = width_of(base_width, m, f"widths[{i}]")
                _checked(f"widths[{i}]: {m:g} × base_width {base_width} = {width} (arm {arm})", _resolve, raw,
                         {**overrides, "model.width": width})
        return self

    def arm_overrides(self) -> dict[str, dict[str, Any]]:
        """Every arm's dotted overrides: a rule arm sets `optim.wd_scaling`, then the extra arms."""
        return {**{rule: {"optim.wd_scaling": rule} for rule in self.rules}, **self.arms}


def log_grid(v: Mapping[str, Any]) -> list[float]:
    """`num` log-spaced LRs from `min` to `max`, rounded to 12 significant digits (2e-3·2^k stays exact)."""
    if set(v) != {"min", "max", "num"}:
        raise ValueError(f"a grid needs exactly the keys min, max, num; got {sorted(v)}")
    lo, hi, num = v["min"], v["max"], v["num"]
    if not (isinstance(num, int) and num >= 1 and _positive(float(lo)) <= _positive(float(hi))):
        raise ValueError(f"need 0 < min <= max and an integer num >= 1, got {dict(v)}")
    return [float(f"{lo * (hi / lo) ** (i / max(num - 1, 1)):.12g}") for i in range(num)]


def width_of(base_width: int, m: float, where: str) -> int:
    """The model width base_width × m, which must be an integer."""
    width = base_width * m
    if not float(width).is_integer():
        raise ValueError(f"{where}: {m:g} × base_width {base_width} = {width:g} is not an integer")
    return int(width)


def load_spec(source: str | Path | Mapping[str, Any] | SweepSpec) -> SweepSpec:
    """A validated spec from a YAML path, a dict or a spec; a relative `base.config` is read from
    beside the YAML file."""
    if isinstance(source, SweepSpec):
        return source
    importable(Path.cwd())  # a user objective in the working directory imports, here and in the workers
    raw = dict(source) if isinstance(source, Mapping) else _read(Path(source))
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(format_errors(err, "invalid sweep spec")) from None


def read_written_spec(dir: str | Path) -> dict[str, Any]:
    """The resolved spec a sweep wrote into its folder (`SPEC_FILE`), as a dict for readers: not
    validated, so reading a sweep never imports its objective. A missing or damaged file raises
    `SpecError` naming it."""
    try:
        return load_yaml(Path(dir) / SPEC_FILE, what="spec")
    except ConfigError as err:
        raise SpecError(f"{err}; re-run `lrtransfer sweep` with its spec to rewrite it") from None


def dump_spec(spec: SweepSpec) -> str:
    """The resolved spec as YAML (`DIR/sweep.yaml`): the base config written out, LR grids as lists."""
    data = spec.model_dump(mode="json")
    data["base"] = {"inline": validate(spec.base.raw()).to_dict()}
    return yaml.safe_dump(data, sort_keys=False)


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = load_yaml(path, what="spec")
    except ConfigError as err:
        raise SpecError(str(err)) from None
    importable(path.parent)  # an objective module beside the spec file imports, here and in the workers
    base = raw.get("base")
    if isinstance(base, dict) and base.get("config") and not Path(base["config"]).is_absolute():
        raw["base"] = {**base, "config": str(path.parent / base["config"])}  # beside the spec file
    return raw


def _resolve(raw: Mapping[str, Any], overrides: Mapping[str, Any]):
    return validate(apply_overrides(raw, overrides))


def _checked(where: str, make, *args) -> Any:
    """`make(*args)`, with a ConfigError re-raised as a ValueError that names `where`."""
    try:
        return make(*args)
    except ConfigError as err:
        detail = str(err).removeprefix("invalid config:\n  ").replace("\n  ", "; ")
        raise ValueError(f"{where}: {detail}") from None

