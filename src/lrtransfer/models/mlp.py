"""Multi-layer perceptron whose hidden widths scale: the smallest muP testbed.

Names: ``layers.0`` (input Linear in_dim→width), ``layers.{1..depth-1}`` (hidden Linear
width→width), ``output`` (Linear width→out_dim). Inputs are flattened, so the same model takes
8×8 digit images ``[B, 1, 8, 8]`` and vectors ``[B, in_dim]``.

Weights are initialised N(0, 1/fan_in) (standard parameterisation; muP enters only through
per-layer learning rates, Appendix G.2); biases start at zero.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from lrtransfer.models.base import FamilyConfig

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}


def init_linear_(layer: nn.Linear) -> None:
    """Initialise ``layer.weight`` ~ N(0, 1/fan_in) and its bias (if any) to zero, in place."""
    nn.init.normal_(layer.weight, mean=0.0, std=1.0 / math.sqrt(layer.in_features))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class MLPConfig(FamilyConfig):
    """Shape of an MLP; `width` is the hidden width that scales."""

    family: Literal["mlp"] = Field("mlp", description="Model family discriminator.")
    in_dim: int = Field(64, gt=0, description="Number of input features after flattening (8x8 digits: 64).")
    out_dim: int = Field(10, gt=0, description="Number of outputs (classes).")
    width: int = Field(64, gt=0, description="Hidden width of every hidden layer.")
    base_width: int = Field(64, gt=0, description="Hidden width of the 1x proxy that defines muP base shapes.")
    depth: int = Field(3, ge=1, description="Number of hidden layers (>= 1); depth-1 of them are width x width.")
    activation: Literal["relu", "gelu", "tanh"] = Field("relu", description="Hidden nonlinearity.")
    bias: bool = Field(True, description="Give every Linear layer a bias.")

    def build(self) -> nn.Module:
        return MLP(self)

    def check_data(self, data) -> None:
        if data.kind == "synthetic" and (self.in_dim, self.out_dim) != (data.in_dim, data.out_dim):
            raise ValueError(f"model.in_dim/out_dim: {self.in_dim}/{self.out_dim} must match data "
                             f"{data.in_dim}/{data.out_dim}")
        if data.kind == "digits" and (self.in_dim, self.out_dim) != (64, 10):
            raise ValueError("model.in_dim/out_dim: digits need in_dim 64 and out_dim 10")
        if data.kind not in ("synthetic", "digits"):
            raise ValueError(f"data.kind: the mlp model needs vector data (synthetic, digits), got {data.kind!r}")


class MLP(nn.Module):
    """``model(x [B, ...]) -> [B, out_dim]``; x is flattened to ``[B, in_dim]``."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        dims = [cfg.in_dim] + [cfg.width] * cfg.depth
        self.layers = nn.ModuleList(
            nn.Linear(d_in, d_out, bias=cfg.bias) for d_in, d_out in zip(dims[:-1], dims[1:])
        )
        self.output = nn.Linear(cfg.width, cfg.out_dim, bias=cfg.bias)
        self.act = _ACTIVATIONS[cfg.activation]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every Linear: weight N(0, 1/fan_in), bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                init_linear_(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, out_dim]`` for inputs ``[B, in_dim]`` or ``[B, *shape]`` with prod = in_dim."""
        x = x.flatten(1)
        if x.shape[1] != self.cfg.in_dim:
            raise ValueError(f"x: {x.shape[1]} features after flattening, expected in_dim={self.cfg.in_dim}")
        for layer in self.layers:
            x = self.act(layer(x))
        return self.output(x)
