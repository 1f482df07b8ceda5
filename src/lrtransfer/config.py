"""Typed run configuration: one pydantic model per component, nested into `RunConfig`.

One path from defaults to the resolved config (lingua / OLMo-core style):
defaults → YAML file or built-in preset → dotted overrides (`optim.lr=3e-3`).
Every field has a one-line description; an invalid value raises `ConfigError`
naming the field (``optim.wd_scaling: Input should be 'independent', 'standard' or 'none'``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lrtransfer.data import DataConfig
from lrtransfer.models import ModelConfig

Role = Literal["input", "hidden", "output", "gain", "bias"]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptimConfig(_Strict):
    """AdamW with width-aware per-layer LR and weight-decay scaling (see `lrtransfer.scaling`)."""

    name: Literal["adamw", "sgd"] = Field("adamw", description="Optimizer: PyTorch AdamW (paper Algorithm 1) or SGD.")
    lr: float = Field(1e-2, gt=0, description="Base LR of the width-scaling (hidden, output) layers, before scaling.")
    fixed_lr: float | None = Field(
        None, gt=0, description="LR of input, gain and bias params (Appendix G.2 phase 2); default `lr`."
    )
    weight_decay: float = Field(0.1, ge=0, description="Base weight decay λ (PyTorch AdamW: decay step η·λ).")
    lr_scaling: Literal["mup", "sqrt", "none"] = Field("mup", description="Hidden/output LR rule: ×1/m, ×1/√m, ×1.")
    wd_scaling: Literal["independent", "standard", "none"] = Field(
        "independent", description="Weight-decay rule (Eq 7, 8): ×m (keeps η·λ), ×1, or 0."
    )
    no_decay: tuple[Role, ...] = Field(("gain",), description="Roles with weight decay 0 (paper: gains only).")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW (β1, β2); SGD uses β1 as momentum.")
    eps: float = Field(1e-8, gt=0, description="AdamW ε.")
    foreach: bool | None = Field(None, description="Use torch's foreach AdamW kernel (None: torch's default).")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {v}")
        return v


class ScheduleConfig(_Strict):
    """LR multiplier per step (`lrtransfer.schedules`); never overwrites a group's scaled LR."""

    name: Literal["warmup_linear_decay", "warmup_cosine", "constant"] = Field(
        "warmup_linear_decay", description="Base schedule (paper default: 10% linear warmup, linear decay to 0)."
    )
    warmup: float = Field(0.1, ge=0, le=1, description="Linear warmup length as a fraction of the run.")
    extra_warmup: Literal["none", "exp", "decay_away"] = Field(
        "none", description="Additional width-dependent warmup factor: Eq 14 (exp) or Eq 15 (decay_away)."
    )
    extra_warmup_length: float = Field(
        0.5, gt=0, le=1, description="Length T_W of the exp warmup (Eq 14) as a fraction of the run."
    )
    extra_warmup_width_mult: float | None = Field(
        None, ge=1, description="m in Eq 14/15; default: the model's width multiplier."
    )


class MonitorConfig(_Strict):
    """Per-layer alignment diagnostics (Eq 2, 4) recorded by `AlignmentMonitor`."""

    enabled: bool = Field(True, description="Record alignment metrics on measured steps.")
    every: int = Field(10, ge=1, description="Measure every this many steps.")
    sample: float = Field(1 / 64, gt=0, le=1, description="Fraction of the (rank 0 micro-)batch used as X.")
    layers: list[str] | None = Field(None, description="Module names or glob patterns to measure; default all.")


class RunSettings(_Strict):
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


class RunConfig(_Strict):
    """Everything that defines one training run; its hash identifies the run in the store."""

    model: ModelConfig = Field(description="Model family and widths (`lrtransfer.models`).")
    data: DataConfig = Field(description="Dataset (`lrtransfer.data`).")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimizer and scaling rules.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="LR schedule.")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="Alignment monitor.")
    run: RunSettings = Field(default_factory=RunSettings, description="Length, seed, intervals, device.")

    @model_validator(mode="after")
    def _model_fits_data(self) -> RunConfig:
        m, d = self.model, self.data
        if m.width < m.base_width:
            raise ValueError(f"model.width: {m.width} is narrower than model.base_width {m.base_width}")
        if m.family == "llama" and d.kind != "text":
            raise ValueError(f"data.kind: the llama model needs text data, got {d.kind!r}")
        if m.family == "llama" and d.seq_len > m.seq_len:
            raise ValueError(f"data.seq_len: {d.seq_len} exceeds model.seq_len {m.seq_len}")
        if m.family == "mlp" and d.kind == "synthetic" and (m.in_dim, m.out_dim) != (d.in_dim, d.out_dim):
            raise ValueError(f"model.in_dim/out_dim: {m.in_dim}/{m.out_dim} must match data {d.in_dim}/{d.out_dim}")
        if m.family == "mlp" and d.kind == "digits" and (m.in_dim, m.out_dim) != (64, 10):
            raise ValueError("model.in_dim/out_dim: digits need in_dim 64 and out_dim 10")
        if m.family == "resnet" and d.kind != "digits":
            raise ValueError(f"data.kind: the resnet model needs image data (digits), got {d.kind!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-friendly dict (tuples as lists)."""
        return self.model_dump(mode="json")


# --- loading ---------------------------------------------------------------------------------


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


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; values are parsed as YAML scalars/lists (`1e-3`, `true`, `[1, 2]`)."""
    out = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected dotted.key=value")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: {part!r} is a value, not a section")
            node = child
        node[leaf] = yaml.safe_load(text) if text else None
    return out


def resolve(
    path: str | Path | None = None, *, preset: str | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """Defaults → YAML file or preset → dotted overrides → validated `RunConfig`."""
    if path is not None and preset is not None:
        raise ConfigError("give either a config file or --preset, not both")
    raw: dict[str, Any] = {}
    if preset is not None:
        raw = preset_dict(preset)
    elif path is not None:
        raw = load_yaml(path)
    return validate(apply_overrides(raw, overrides or []))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file: {path} does not exist")
    raw = yaml.safe_load(path.read_text())
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"config file: {path} must hold a mapping, not {type(raw).__name__}")
    return raw or {}


def validate(raw: dict[str, Any]) -> RunConfig:
    """Validate a raw dict, turning pydantic's errors into one message per field."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_errors(err)) from None


def format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        # Drop discriminator tags (e.g. 'llama') that pydantic inserts into the location.
        loc = ".".join(str(p) for p in e["loc"] if not _is_tag(p))
        shown = e["type"] not in ("missing", "extra_forbidden") and not isinstance(e["input"], dict)
        got = f" (got {e['input']!r})" if shown else ""
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}{got}" if loc else f"{msg}{got}")
    return "invalid config:\n  " + "\n  ".join(lines)


def _is_tag(part: Any) -> bool:
    return part in ("llama", "mlp", "resnet", "text", "digits", "synthetic")


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML (what `--dry-run` prints and `config.yaml` holds)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
