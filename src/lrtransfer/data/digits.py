"""Image classification on scikit-learn's bundled 8x8 handwritten digits (1,797 images, offline).

Pixels (0..16) are divided by 16, then standardised with one mean and one standard deviation
computed over all pixels of the training split (a per-pixel std would be zero on the always-blank
border). The train/validation split is stratified by class and fixed by ``split_seed``.

Training batches are drawn *with replacement* from the training split using a generator seeded
by ``(seed, step)``: stateless, so resuming at any step is exact, at the cost of not visiting
every image exactly once per epoch.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from lrtransfer.data.base import DataSourceConfig, check_batch_size, chunk, step_generator

IMAGE_SHAPE = (1, 8, 8)
N_CLASSES = 10
PIXEL_MAX = 16.0


class DigitsDataConfig(DataSourceConfig):
    """The sklearn 8x8 digits, split once into training and validation images."""

    kind: Literal["digits"] = Field("digits", description="Discriminator: 8x8 digit classification.")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Fraction of images held out (stratified).")
    split_seed: int = Field(0, ge=0, description="Seed of the fixed stratified train/validation split.")
    val_samples: int | None = Field(
        None, ge=1, description="Evaluate at most this many validation images (None: all of them)."
    )

    def build(self) -> DigitsDataset:
        return DigitsDataset(self)


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


def split_indices(labels: np.ndarray, val_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified ``(train, val)`` index arrays in shuffled order; a pure function of its arguments."""
    from sklearn.model_selection import train_test_split

    train, val = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, random_state=split_seed, stratify=labels
    )
    return train, val


class DigitsDataset:
    """Standardised digit images ``[B, 1, 8, 8]`` float32 with int64 labels.

    Attributes:
        mean, std: the training-split statistics of ``pixel / 16`` used to standardise.
    """

    task = "classify"
    input_dim = int(np.prod(IMAGE_SHAPE))
    output_dim = N_CLASSES

    def __init__(self, cfg: DigitsDataConfig) -> None:
        """Load the images, split them, and standardise with training statistics."""
        self.cfg = cfg
        pixels, labels = _load_digits()
        train, val = split_indices(labels, cfg.val_fraction, cfg.split_seed)
        train = np.sort(train)
        val = np.sort(val[: cfg.val_samples])  # a random subset when val_samples is set
        scaled = pixels / PIXEL_MAX
        self.mean = float(scaled[train].mean())
        self.std = float(scaled[train].std())
        images = torch.from_numpy((scaled - self.mean) / self.std).reshape(-1, *IMAGE_SHAPE)
        targets = torch.from_numpy(labels)
        self.train_x, self.train_y = images[train], targets[train]
        self.val_x, self.val_y = images[val], targets[val]

    def train_batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor]:
        """``batch_size`` training images drawn with replacement; a pure function of ``(seed, step)``."""
        check_batch_size(batch_size)
        idx = torch.randint(0, len(self.train_y), (batch_size,), generator=step_generator(seed, step))
        return self.train_x[idx], self.train_y[idx]

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The fixed validation images, in index order."""
        return chunk(self.val_x, self.val_y, batch_size)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean cross-entropy of logits ``[B, 10]`` against labels ``[B]``."""
        return F.cross_entropy(output.float(), target)
