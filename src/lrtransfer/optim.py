"""The optimizer config: a stock torch optimizer over width-scaled param groups (`lrtransfer.scaling`).

`OptimConfig.build(model, reference)` is the one place a run's optimizer is made, and
`OptimConfig.hyperparams(role, m)` the η and λ a parameter of that role gets (Eq 6-8), which
analysis reads instead of recomputing the rules.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from lrtransfer.roles import Role
from lrtransfer.scaling import LRRule, WDRule, param_groups, role_hyperparams
from lrtransfer.strict import Strict


class OptimConfig(Strict):
    """AdamW with width-aware per-layer LR and weight-decay scaling (see `lrtransfer.scaling`)."""

    name: Literal["adamw", "sgd"] = Field("adamw", description="Optimizer: PyTorch AdamW (paper Algorithm 1) or SGD.")
    lr: float = Field(1e-2, gt=0, description="Base LR of the width-scaling (hidden, output) layers, before scaling.")
    fixed_lr: float | None = Field(
        None, gt=0, description="LR of input, gain and bias params (Appendix G.2 phase 2); default `lr`."
    )
    weight_decay: float = Field(0.1, ge=0, description="Base weight decay λ (PyTorch AdamW: decay step η·λ).")
    lr_scaling: LRRule = Field("mup", description="Hidden/output LR rule: ×1/m, ×1/√m, ×1.")
    wd_scaling: WDRule = Field("independent", description="Weight-decay rule (Eq 7, 8): ×m (keeps η·λ), ×1, or 0.")
    no_decay: tuple[Role, ...] = Field(("gain",), description="Roles with weight decay 0 (paper: gains only).")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW (β1, β2); SGD uses β1 as momentum.")
    eps: float = Field(1e-8, gt=0, description="AdamW ε.")
    foreach: bool | None = Field(None, description="Use torch's foreach AdamW kernel (with fused: false; None: torch's "
                                 "default).")
    fused: bool = Field(True, description="Use torch's fused AdamW kernel: the same update in one kernel per "
                        "parameter group (faster; bench/demo_step.py).")

    @field_validator("lr", "fixed_lr", "weight_decay", "eps")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError(f"must be a finite number, got {v}")
        return v

    @model_validator(mode="after")
    def _one_kernel(self) -> OptimConfig:
        if self.fused and self.foreach:
            raise ValueError("foreach: torch's AdamW takes fused or foreach, not both; set optim.fused=false with it")
        return self

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {v}")
        return v

    def rules(self) -> dict[str, Any]:
        """The keyword arguments of `param_groups` / `role_hyperparams` this config sets."""
        return {"lr": self.lr, "weight_decay": self.weight_decay, "lr_scaling": self.lr_scaling,
                "wd_scaling": self.wd_scaling, "fixed_lr": self.fixed_lr, "no_decay": self.no_decay}

    def hyperparams(self, role: str, width_mult: float) -> tuple[float, float]:
        """``(lr, weight_decay)`` of a parameter with ``role`` at width multiplier m (Eq 6-8)."""
        lr, wd, _ = role_hyperparams(role, width_mult, **self.rules())
        return lr, wd

    def build(self, model: torch.nn.Module, reference: dict[str, Any]) -> torch.optim.Optimizer:
        """The optimizer over width-scaled groups; ``reference`` is ``{"base_model": ...}`` or
        ``{"width_mult": m}`` (how `lrtransfer.roles` reads each parameter's role)."""
        groups = param_groups(model, **reference, **self.rules())
        if self.name == "sgd":
            return torch.optim.SGD(groups, lr=self.lr, momentum=self.betas[0])
        return torch.optim.AdamW(groups, lr=self.lr, betas=self.betas, eps=self.eps, foreach=self.foreach,
                                 fused=self.fused or None)
