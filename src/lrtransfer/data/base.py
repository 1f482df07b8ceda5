"""The dataset interface and the stateless per-step random generator every dataset draws from.

A training batch is a pure function of ``(seed, step)``: no iterator, no epoch counter, no
hidden position. Resuming at step ``t`` therefore replays exactly the batches an uninterrupted
run would have seen, and data-parallel ranks can each build the same global batch and slice it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from lrtransfer.strict import Strict

TaskKind = Literal["lm", "classify", "regress"]  # what a dataset asks of the model; picks the loss

# Streams keep the generators of unrelated uses apart even for equal (seed, step) pairs.
STREAM_TRAIN = 0
STREAM_VAL = 1
STREAM_TEACHER = 2


@runtime_checkable
class Dataset(Protocol):
    """What the training loop needs from a dataset.

    Attributes:
        task: ``"lm"`` (next-token prediction), ``"classify"`` or ``"regress"``; picks the loss.
        input_dim: size of one input: vocabulary size for ``lm``, number of features otherwise.
        output_dim: number of model outputs per position/sample (vocab, classes, or targets).
    """

    task: TaskKind
    input_dim: int
    output_dim: int

    def train_batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor]:
        """The global training batch ``(inputs, targets)`` for optimizer step ``step``."""
        ...

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The fixed validation set in batches; identical on every call."""
        ...

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean loss of model ``output`` against ``target`` (cross-entropy or MSE)."""
        ...


class DataSourceConfig(Strict):
    """Base of the data configs: a ``kind`` tag and a `build()` that makes the `Dataset`."""

    kind: str

    def build(self) -> Dataset:
        """The dataset described by this config (a corpus that must be fetched once is fetched first)."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def ensure_available(self) -> None:
        """Fetch what the dataset needs that is not cached yet (nothing, for bundled data)."""


def step_generator(seed: int, step: int, stream: int = STREAM_TRAIN) -> torch.Generator:
    """A CPU ``torch.Generator`` whose state depends only on ``(seed, step, stream)``.

    The three integers are hashed with numpy's ``SeedSequence``, so nearby pairs such as
    ``(0, 1)`` and ``(1, 0)`` give unrelated streams (a linear mix ``seed * K + step`` collides).
    """
    check_non_negative(seed=seed, step=step, stream=stream)
    state = np.random.SeedSequence([seed, step, stream]).generate_state(1, dtype=np.uint64)[0]
    # torch seeds are signed 64-bit internally; keep 63 bits to stay in range on every version.
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def check_non_negative(**values: int) -> None:
    """Raise ``ValueError`` naming the first argument that is not a non-negative int."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: must be a non-negative int, got {value!r}")


def check_batch_size(batch_size: int) -> None:
    """Raise ``ValueError`` naming ``batch_size`` unless it is a positive int."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive int, got {batch_size!r}")


def chunk(inputs: Tensor, targets: Tensor, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Split a fixed validation set into consecutive batches (the last one may be smaller)."""
    check_batch_size(batch_size)
    for start in range(0, inputs.shape[0], batch_size):
        yield inputs[start : start + batch_size], targets[start : start + batch_size]
