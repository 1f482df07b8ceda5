"""Model families the study trains, and a registry that builds them from a config.

``ModelConfig`` is a discriminated union on ``family`` ("llama" | "mlp" | "resnet"), so a run
config can nest it and YAML picks the family by name. Every config has ``width`` (the scaled
hidden width) and ``base_width`` (the 1x proxy's width); ``build_base_model`` builds the proxy so
``param_groups(model, base_model)`` needs no second hand-built model.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from lrtransfer.models.llama import Llama, LlamaConfig
from lrtransfer.models.mlp import MLP, MLPConfig
from lrtransfer.models.resnet import ResNet, ResNetConfig

ModelConfig = Annotated[LlamaConfig | MLPConfig | ResNetConfig, Field(discriminator="family")]

_BUILDERS: dict[str, type[nn.Module]] = {"llama": Llama, "mlp": MLP, "resnet": ResNet}

__all__ = [
    "Llama",
    "LlamaConfig",
    "MLP",
    "MLPConfig",
    "ModelConfig",
    "ResNet",
    "ResNetConfig",
    "base_config",
    "build_base_model",
    "build_model",
    "width_mult",
]


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the model described by ``cfg`` (initialised from torch's global RNG)."""
    try:
        builder = _BUILDERS[cfg.family]
    except (AttributeError, KeyError):
        raise ValueError(f"family: unknown model family in {cfg!r}; expected one of {sorted(_BUILDERS)}") from None
    return builder(cfg)


def base_config(cfg: ModelConfig) -> ModelConfig:
    """The same config at ``width = base_width`` (re-validated, e.g. for head_dim divisibility)."""
    return type(cfg).model_validate({**cfg.model_dump(), "width": cfg.base_width})


def build_base_model(cfg: ModelConfig) -> nn.Module:
    """The 1x proxy of ``cfg`` (muP base shapes), built without touching torch's global RNG.

    The RNG is forked so that building the base model before or after the real one never
    changes the real model's initialisation.
    """
    with torch.random.fork_rng(devices=[]):
        return build_model(base_config(cfg))


def width_mult(cfg: ModelConfig) -> float:
    """Width multiplier m = width / base_width (the paper's 1x, 2x, …, 16x)."""
    return cfg.width / cfg.base_width
