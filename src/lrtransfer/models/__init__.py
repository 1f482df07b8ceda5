"""Model families the study trains, registered in one place: `FAMILIES`.

``ModelConfig`` is a discriminated union on ``family`` built from `FAMILIES`, so a run config
nests it and YAML picks the family by name. Every family config (`models.base.FamilyConfig`) has
``width`` (the scaled hidden width), ``base_width`` (the 1x proxy's width), ``build()``,
``build_base()`` and ``check_data(data)``. Adding a family is its module plus one entry here
(docs/adding-a-model-family.md).
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from lrtransfer.models.base import FamilyConfig
from lrtransfer.models.llama import Llama, LlamaConfig
from lrtransfer.models.mlp import MLP, MLPConfig
from lrtransfer.models.resnet import ResNet, ResNetConfig

FAMILIES: tuple[type[FamilyConfig], ...] = (LlamaConfig, MLPConfig, ResNetConfig)  # register a family here
ModelConfig = Annotated[Union[FAMILIES], Field(discriminator="family")]  # noqa: UP007 - built from a tuple

__all__ = [
    "FAMILIES",
    "MLP",
    "FamilyConfig",
    "Llama",
    "LlamaConfig",
    "MLPConfig",
    "ModelConfig",
    "ResNet",
    "ResNetConfig",
]

