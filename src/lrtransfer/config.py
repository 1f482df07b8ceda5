"""The run config and the one path that makes it: defaults → YAML file or preset → dotted overrides.

`RunConfig` nests one typed config per component, each of which builds its own part (torchtitan
style): ``model.build()``, ``data.build()``, ``optim.build(model, reference)``,
``schedule.multipliers(...)`` and ``monitor.build(model)``. This module is the one home of the
config machinery every config — run configs and sweep specs alike — goes through:
`apply_overrides` (dotted keys), `format_errors` (one line per field, ``optim.wd_scaling: …``,
``widths[1]: …``), `load_yaml` (safe loader) and `config_hash` (a run's identity).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from lrtransfer.data import DATA_SOURCES, DataConfig
from lrtransfer.data.text import anchor_paths
from lrtransfer.models import FAMILIES, ModelConfig
from lrtransfer.monitor import MonitorConfig
from lrtransfer.optim import OptimConfig
from lrtransfer.records import jsonl
from lrtransfer.schedules import ScheduleConfig
from lrtransfer.strict import ConfigError, Strict

__all__ = ["ConfigError", "MonitorConfig", "ObjectiveConfig", "OptimConfig", "RunConfig", "RunSettings",
           "ScheduleConfig", "Strict", "TrialConfig",
           "apply_overrides", "config_hash", "dump_yaml", "format_errors", "load_yaml", "presets", "resolve",
           "validate"]

# Discriminator values pydantic puts into error locations ("model.llama.width"); derived from the unions.
_TAGS = frozenset(get_args(c.model_fields["family"].annotation)[0] for c in FAMILIES) | frozenset(
    get_args(c.model_fields["kind"].annotation)[0] for c in DATA_SOURCES)


class RunSettings(Strict):
    """Length, batch, seed, intervals and hardware of one training run."""

    steps: int = Field(1000, ge=1, description="Optimizer steps.")
    batch_size: int = Field(16, ge=1, description="Global batch size (split evenly across DDP ranks).")
    seed: int = Field(0, ge=0, description="Seed for initialisation and batch sampling.")
    eval_every: int = Field(0, ge=0, description="Validation interval in steps (0: only at the end).")
    checkpoint_every: int = Field(100, ge=0, description="Checkpoint interval in steps (0: never, no resume).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")
    bf16: bool = Field(False, description="bf16 autocast on CUDA (ignored on CPU).")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (None: torch's default).")
    final_window: int = Field(100, ge=1, description="Final train loss = mean of the last this many steps.")
    max_loss: float = Field(20.0, gt=0, description="A loss above this (or NaN/inf) marks the run diverged.")

    @field_validator("max_loss")
    @classmethod
    def _finite(cls, v: float) -> float:
        if v != v or v == float("inf"):
            raise ValueError(f"must be a finite number, got {v}")
        return v


class _PlannedConfig(Strict):
    """What a sweep plans, built-in run or user objective: its widths, identity and per-step LRs."""

    @model_validator(mode="after")
    def _not_narrower_than_base(self):
        if self.model.width < self.model.base_width:
            raise ValueError(f"model.width: {self.model.width} is narrower than model.base_width "
                             f"{self.model.base_width}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-friendly dict (tuples as lists)."""
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """The run's identity: `config_hash` of the resolved config."""
        return config_hash(self.to_dict())

    def corpora(self) -> list[Any]:
        """The data configs whose corpora a run of this config reads (fetched once by the sweep's
        driver before its workers start); a user objective brings its own data."""
        return []

    def lr_multipliers(self) -> Any:
        """The schedule's multiplier of every step (`ScheduleConfig.multipliers`); None when the
        run's length is unknown (a user objective without ``run.steps``)."""
        if self.run.steps is None:
            return None
        return self.schedule.multipliers(self.run.steps, lr=self.optim.lr, weight_decay=self.optim.weight_decay,
                                         width_mult=self.model.width_mult)


class RunConfig(_PlannedConfig):
    """Everything that defines one training run; its `hash()` identifies the run in the store."""

    model: ModelConfig = Field(description="Model family and widths (`lrtransfer.models`).")
    data: DataConfig = Field(description="Dataset (`lrtransfer.data`).")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimizer and scaling rules.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="LR schedule.")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="Alignment monitor.")
    run: RunSettings = Field(default_factory=RunSettings, description="Length, seed, intervals, device.")

    def corpora(self) -> list[Any]:
        return [self.data]

    @model_validator(mode="after")
    def _model_fits_data(self) -> RunConfig:
        self.model.check_data(self.data)
        return self


class ObjectiveModel(Strict):
    """The widths of a user's model: the study sets `width`; the objective builds the model."""

    width: int = Field(gt=0, description="The width this trial trains (m × base_width).")
    base_width: int = Field(gt=0, description="The width of the 1x proxy that defines muP base shapes.")

    @property
    def width_mult(self) -> float:
        return self.width / self.base_width


class ObjectiveRun(Strict):
    """What the study needs to know of a user's training loop."""

    seed: int = Field(0, ge=0, description="Seeds torch, numpy and random before the objective is called.")
    steps: int | None = Field(None, ge=1, description="Optimizer steps, if known (schedule, timescale notes).")
    final_window: int = Field(100, ge=1, description="Final train loss = mean of the last this many logged losses.")
    max_loss: float = Field(20.0, gt=0, description="A logged loss above this (or NaN/inf) marks the trial diverged.")


class ObjectiveConfig(_PlannedConfig):
    """One trial of a user's objective (`lrtransfer.Trial`): what the study plans and hashes."""

    objective: str = Field(description="The objective function, as 'package.module:function'.")
    params: dict[str, Any] = Field({}, description="Free-form parameters handed to the objective as trial.params.")
    model: ObjectiveModel = Field(description="The trial's width and the base width.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="The LR/WD rules trial.param_groups applies.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="LR schedule (if the loop uses it).")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="What trial.monitor(model) measures.")
    run: ObjectiveRun = Field(default_factory=ObjectiveRun, description="Seed, length and divergence bound.")

    @field_validator("objective")
    @classmethod
    def _module_and_name(cls, v: str) -> str:
        module, sep, name = v.partition(":")
        if not (sep and module and name):
            raise ValueError(f"{v!r} is not of the form 'package.module:function'")
        return v


TrialConfig = RunConfig | ObjectiveConfig  # what a sweep plans: a built-in run or a trial of a user objective


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit id of a resolved config: sha256 of its canonical JSON (`jsonl.dumps`).

    Canonical: keys sorted at every depth, tuples as lists, numpy values as Python ones, floats by
    their shortest round-trip repr, an integral float written as its int (``1.0`` ≡ ``1``, as Python's
    ``==`` has it) but ``True`` ≢ ``1``. Any other change of a value gives a different hash.
    """
    return hashlib.sha256(jsonl.dumps(config, "config", canonical=True).encode()).hexdigest()[:16]


# --- the one path: raw dicts, overrides, validation, errors ----------------------------------


def parse_overrides(items: list[str] | Mapping[str, Any], where: str = "override") -> dict[str, Any]:
    """``["a.b=1e-3", ...]`` (values parsed as YAML scalars/lists) or a mapping, as ``{dotted key: value}``.

    Nested mappings are flattened (``{schedule: {warmup: 0.5}}`` → ``{schedule.warmup: 0.5}``), so
    an override changes only the keys it names.
    """
    if isinstance(items, Mapping):
        return _flatten(items)
    out = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        if not sep or not key:
            raise ConfigError(f"{where} {item!r}: expected dotted.key=value")
        out[key] = yaml.safe_load(text) if text else None
    return out


def apply_overrides(raw: Mapping[str, Any], overrides: list[str] | Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``raw`` with dotted overrides set: ``k=v`` strings or ``{dotted key: value}``."""
    out = copy.deepcopy(dict(raw))
    for key, value in parse_overrides(overrides).items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part!r} is a value, not a section")
        node[leaf] = value
    return out


def _flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def validate(raw: Mapping[str, Any]) -> TrialConfig:
    """Validate a raw dict — an `ObjectiveConfig` when it names an ``objective``, else a
    `RunConfig` — turning pydantic's errors into one message per field."""
    kind = ObjectiveConfig if isinstance(raw, Mapping) and "objective" in raw else RunConfig
    try:
        return kind.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_errors(err)) from None


def format_errors(err: ValidationError, title: str = "invalid config") -> str:
    """One line per error, located like ``optim.wd_scaling`` or ``widths[1]`` (union tags dropped)."""
    lines = []
    for e in err.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"] if p not in _TAGS).lstrip(".")
        shown = e["type"] not in ("missing", "extra_forbidden") and not isinstance(e["input"], (dict, list))
        got = f" (got {e['input']!r})" if shown else ""
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}{got}" if loc else f"{msg}{got}")
    return f"{title}:\n  " + "\n  ".join(lines)


# --- presets and files -----------------------------------------------------------------------


def presets() -> list[str]:
    """Names of the built-in configs (`lrtransfer train --preset NAME`)."""
    folder = resources.files("lrtransfer") / "presets"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_dict(name: str) -> dict[str, Any]:
    """The raw dict of a built-in preset."""
    if name not in presets():
        raise ConfigError(f"preset: {name!r} is not one of {'|'.join(presets())}")
    text = (resources.files("lrtransfer") / "presets" / f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def resolve(
    path: str | Path | None = None, *, preset: str | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """Defaults → YAML file or preset → dotted overrides → validated `RunConfig`.

    Relative ``data.paths`` are read from beside the config file (from the working directory when
    an override sets them), and written out absolute.
    """
    if path is not None and preset is not None:
        raise ConfigError("give either a config file or --preset, not both")
    raw: dict[str, Any] = {}
    if preset is not None:
        raw = preset_dict(preset)
    elif path is not None:
        raw = anchor_paths(load_yaml(path), Path(path).parent)
    return validate(anchor_paths(apply_overrides(raw, overrides or []), Path.cwd()))


def load_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; a missing file or a syntax error names the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what}: {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" line {where.line + 1}" if where is not None else ""
        reason = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"{what}: {path}{at}: invalid YAML ({reason})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: {path} is not a text file") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{what}: {path} must hold a mapping, not {type(raw).__name__}")
    return raw or {}


def dump_yaml(cfg: TrialConfig) -> str:
    """The resolved config as YAML (what `--dry-run` prints and `config.yaml` holds)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
