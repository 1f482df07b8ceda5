"""What every model family's config has and does: a width, a base width, and a `build()`.

A family is a `FamilyConfig` subclass with a ``family: Literal["name"]`` tag, ``width`` and
``base_width`` fields, ``build()`` (the model, initialised from torch's global RNG) and, where the
family needs a kind of data, ``check_data()``. Registering it is one line in
`lrtransfer.models.FAMILIES` (docs/adding-a-model-family.md).
"""

from __future__ import annotations

from typing import Any, Self

import torch
from torch import nn

from lrtransfer.strict import Strict


class FamilyConfig(Strict):
    """Base of the model families' configs (`LlamaConfig`, `MLPConfig`, `ResNetConfig`)."""

    family: str
    width: int
    base_width: int

    def build(self) -> nn.Module:
        """The model at ``width`` (initialised from torch's global RNG)."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def check_data(self, data: Any) -> None:
        """Raise ValueError naming the field when ``data`` (a data config) cannot feed this model."""

    @property
    def width_mult(self) -> float:
        """Width multiplier m = width / base_width (the paper's 1x, 2x, …, 16x)."""
        return self.width / self.base_width

    def base(self) -> Self:
        """The same config at ``width = base_width`` (re-validated, e.g. for head_dim divisibility)."""
        return type(self).model_validate({**self.model_dump(), "width": self.base_width})

    def build_base(self) -> nn.Module:
        """The 1x proxy (muP base shapes), built without touching torch's global RNG, so building it
        before or after the real model never changes the real model's initialisation."""
        with torch.random.fork_rng(devices=[]):
            return self.base().build()
