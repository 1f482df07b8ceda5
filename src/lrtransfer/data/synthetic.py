"""The controlled regression task: a fixed random teacher MLP plus Gaussian label noise.

Inputs are ``x ~ N(0, I_in_dim)`` and targets ``y = teacher(x) + noise * eps`` with
``eps ~ N(0, I_out_dim)``. The teacher is an MLP of ``teacher_depth`` hidden layers of width
``teacher_width``, weights ``N(0, gain²/fan_in)`` (``gain = teacher_gain`` on the hidden layers, 1 on
the output layer) and zero biases, built from ``teacher_seed``; the ``1/fan_in`` variance keeps its
pre-activations O(gain) at any width, and a gain above 1 makes a tanh teacher a rougher function of x
(more nonlinear, so a student needs many steps of feature learning to fit it). Every training step draws
fresh samples from ``(seed, step)`` (infinite data, no overfitting); the validation set is fixed
by ``teacher_seed`` alone, so runs with different training seeds are scored on the same points.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from lrtransfer.data.base import (
    STREAM_TEACHER,
    STREAM_VAL,
    DataSourceConfig,
    check_batch_size,
    chunk,
    step_generator,
)

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


class SyntheticDataConfig(DataSourceConfig):
    """Student-teacher regression with a random MLP teacher."""

    kind: Literal["synthetic"] = Field("synthetic", description="Discriminator: teacher-network regression.")
    in_dim: int = Field(32, ge=1, description="Input dimension of x.")
    out_dim: int = Field(1, ge=1, description="Output dimension of y.")
    teacher_width: int = Field(64, ge=1, description="Hidden width of the teacher MLP.")
    teacher_depth: int = Field(2, ge=0, description="Hidden layers of the teacher (0: a linear teacher).")
    teacher_activation: Literal["tanh", "relu"] = Field("tanh", description="Teacher nonlinearity.")
    teacher_gain: float = Field(1.0, gt=0, description="Std multiplier of the teacher's hidden-layer weights.")
    noise: float = Field(0.1, ge=0.0, description="Standard deviation of the Gaussian label noise.")
    n_val: int = Field(2048, ge=1, description="Fixed validation samples.")
    teacher_seed: int = Field(0, ge=0, description="Seed of the teacher weights and the validation set.")

    def build(self) -> SyntheticDataset:
        return SyntheticDataset(self)


class Teacher:
    """A fixed random MLP evaluated in float64 (results cast to float32) for reproducibility."""

    def __init__(self, cfg: SyntheticDataConfig) -> None:
        """Draw weights ``N(0, gain²/fan_in)`` (output layer: gain 1) from ``teacher_seed``."""
        gen = step_generator(cfg.teacher_seed, 0, STREAM_TEACHER)
        dims = [cfg.in_dim] + [cfg.teacher_width] * cfg.teacher_depth + [cfg.out_dim]
        gains = [cfg.teacher_gain] * cfg.teacher_depth + [1.0]
        self.weights = [
            torch.randn(fan_out, fan_in, generator=gen, dtype=torch.float64) * gain / fan_in**0.5
            for fan_in, fan_out, gain in zip(dims[:-1], dims[1:], gains)
        ]
        self.activation = ACTIVATIONS[cfg.teacher_activation]

    def __call__(self, x: Tensor) -> Tensor:
        """Teacher output ``[B, out_dim]`` float32 for inputs ``[B, in_dim]``."""
        h = x.to(torch.float64)
        for w in self.weights[:-1]:
            h = self.activation(h @ w.T)
        return (h @ self.weights[-1].T).to(torch.float32)


class SyntheticDataset:
    """Fresh ``(x, y)`` samples every step; a fixed validation set of ``n_val`` samples."""

    task = "regress"

    def __init__(self, cfg: SyntheticDataConfig) -> None:
        """Build the teacher and the validation set."""
        self.cfg = cfg
        self.input_dim = cfg.in_dim
        self.output_dim = cfg.out_dim
        self.teacher = Teacher(cfg)
        self._val = self._sample(cfg.n_val, step_generator(cfg.teacher_seed, 0, STREAM_VAL))

    def _sample(self, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, self.cfg.in_dim, generator=gen)
        eps = torch.randn(n, self.cfg.out_dim, generator=gen)
        return x, self.teacher(x) + self.cfg.noise * eps

    def train_batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor]:
        """``(x [B, in_dim], y [B, out_dim])`` float32; a pure function of ``(seed, step)``."""
        check_batch_size(batch_size)
        return self._sample(batch_size, step_generator(seed, step))

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The fixed validation samples in order."""
        return chunk(*self._val, batch_size)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean squared error over all elements (the noise floor is ``noise**2``)."""
        return F.mse_loss(output.float(), target)
