"""Byte-level language modelling: tokens are the raw bytes of UTF-8 text (vocabulary 256).

The corpus is split contiguously: the first ``1 - val_fraction`` of the bytes is training data,
the tail is validation, so no training window ever sees validation text. A training batch is
``B`` windows of ``seq_len + 1`` bytes at random offsets drawn from ``(seed, step)``; inputs are
``window[:-1]`` and targets ``window[1:]``.

A text config is checked against its corpus when it is resolved: the paths must match files, the
corpus must not be empty and both splits must hold a window; ``fingerprint`` then records what the
corpus is (`lrtransfer.data.fingerprint`), so that an edited corpus file gives a new run identity.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor

from lrtransfer.data.base import DataSourceConfig, check_batch_size, chunk, step_generator
from lrtransfer.data.corpus import ensure_corpus, load_corpus
from lrtransfer.data.fingerprint import corpus_info
from lrtransfer.strict import ConfigError

VOCAB_SIZE = 256


class TextDataConfig(DataSourceConfig):
    """Byte-level next-token prediction on a fixed text corpus."""

    kind: Literal["text"] = Field("text", description="Discriminator: byte-level language modelling.")
    corpus: Literal["shakespeare", "stdlib", "files"] = Field(
        "shakespeare", description="Shakespeare (fetched once), this Python's stdlib source, or user files."
    )
    paths: list[str] = Field(default_factory=list, description="Files or globs to read when corpus='files'.")
    seq_len: int = Field(128, ge=1, description="Tokens (bytes) per training sequence.")
    val_fraction: float = Field(0.05, gt=0.0, lt=1.0, description="Tail fraction of the corpus held out.")
    val_tokens: int = Field(
        16384, ge=1, description="Validation tokens evaluated (rounded down to whole windows of seq_len)."
    )
    fingerprint: str | None = Field(
        None, description="What the corpus is (content hash; `lrtransfer.data.fingerprint`); filled when None."
    )

    @model_validator(mode="after")
    def _check(self) -> TextDataConfig:
        if self.corpus == "files" and not self.paths:
            raise ValueError("paths: must list at least one file or glob when corpus='files'")
        if self.corpus != "files" and self.paths:
            raise ValueError(f"paths: only used with corpus='files', not corpus={self.corpus!r}")
        if self.val_tokens < self.seq_len:
            raise ValueError(f"val_tokens: must be >= seq_len ({self.seq_len}), got {self.val_tokens}")
        return self

    @model_validator(mode="after")
    def _fingerprinted(self) -> TextDataConfig:
        """Check the corpus and fill in its fingerprint; a config that states one is taken as it is
        (its corpus may be gone: a stored config still loads; `check_unchanged` tests it before training)."""
        if self.fingerprint is not None:
            return self
        try:
            info = corpus_info(self.corpus, self.paths)
        except OSError as err:  # FileNotFoundError "paths: ... matches no file": a value error of this config
            raise ValueError(str(err)) from None
        check_split(info.n_bytes, self.seq_len, self.val_fraction, info.label)
        # The one write to this frozen instance, while it is being validated and no one else holds it.
        self.__dict__["fingerprint"] = info.fingerprint
        self.__pydantic_fields_set__.add("fingerprint")
        return self

    def check_unchanged(self) -> None:
        """Raise `ConfigError` if the corpus is no longer the one `fingerprint` describes."""
        try:
            now = corpus_info(self.corpus, self.paths).fingerprint
        except (OSError, ValueError) as err:
            raise ConfigError(f"data.{err}") from None
        if now != self.fingerprint:
            raise ConfigError(f"data.fingerprint: the corpus changed since this config was resolved "
                              f"({self.fingerprint} then, {now} now); resolve the config again (drop "
                              "data.fingerprint) to train on the corpus as it is")

    @property
    def vocab_size(self) -> int:
        """Distinct token ids: the 256 byte values."""
        return VOCAB_SIZE

    def build(self) -> TextDataset:
        return TextDataset(self)

    def ensure_available(self) -> None:
        """Fetch the corpus into the cache if it must be fetched once and is not there yet (Shakespeare)."""
        ensure_corpus(self.corpus)


class TextDataset:
    """Random training windows and fixed validation windows over one byte corpus.

    Attributes:
        data: the whole corpus as a uint8 tensor.
        n_train: bytes ``[0, n_train)`` are training data, ``[n_train, len(data))`` validation.
    """

    task = "lm"
    input_dim = VOCAB_SIZE
    output_dim = VOCAB_SIZE

    def __init__(self, cfg: TextDataConfig, data: bytes | None = None) -> None:
        """Load the corpus named by ``cfg`` (fetched first if it must be; or use ``data``) and split it."""
        self.cfg = cfg
        if data is None:
            cfg.ensure_available()
        raw = data if data is not None else load_corpus(cfg.corpus, cfg.paths)
        self.n_train = check_split(len(raw), cfg.seq_len, cfg.val_fraction, "the corpus")
        self.data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        self._val = self._val_windows()

    @property
    def seq_len(self) -> int:
        """Tokens per sequence."""
        return self.cfg.seq_len

    def _windows(self, starts: Tensor) -> tuple[Tensor, Tensor]:
        idx = starts[:, None] + torch.arange(self.seq_len + 1)
        window = self.data[idx].long()
        return window[:, :-1], window[:, 1:]

    def _val_windows(self) -> tuple[Tensor, Tensor]:
        """Non-overlapping windows spread evenly over the validation split."""
        window = self.seq_len + 1
        n_val = len(self.data) - self.n_train
        count = min(self.cfg.val_tokens // self.seq_len, n_val // window)
        stride = n_val // count  # >= window, so the windows never overlap
        starts = self.n_train + stride * torch.arange(count)
        return self._windows(starts)

    def train_batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor]:
        """``(x, y)`` int64 of shape ``[batch_size, seq_len]``; a pure function of ``(seed, step)``."""
        check_batch_size(batch_size)
        gen = step_generator(seed, step)
        starts = torch.randint(0, self.n_train - self.seq_len, (batch_size,), generator=gen)
        return self._windows(starts)

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The same ``val_tokens // seq_len`` validation windows on every call."""
        return chunk(*self._val, batch_size)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean next-byte cross-entropy; ``output`` is logits ``[B, T, 256]``, ``target`` ``[B, T]``."""
        return F.cross_entropy(output.reshape(-1, output.shape[-1]).float(), target.reshape(-1))


def anchor_paths(raw: dict, folder: str | Path) -> dict:
    """A raw run config whose relative ``data.paths`` are made absolute against `folder` (the config
    file's folder, or the working directory for command-line overrides); other values untouched."""
    data = raw.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("paths"), list):
        return raw
    paths = [os.path.abspath(os.path.join(folder, os.path.expanduser(p))) if isinstance(p, str) else p
             for p in data["paths"]]
    return {**raw, "data": {**data, "paths": paths}}


def check_split(n_bytes: int, seq_len: int, val_fraction: float, label: str) -> int:
    """The training split's length of the corpus `label` of `n_bytes`; ValueError naming the field when
    the corpus is empty or a split cannot hold one window of ``seq_len + 1`` bytes."""
    if n_bytes == 0:
        raise ValueError(f"corpus: {label} is empty")
    n_train, window = n_bytes - int(round(val_fraction * n_bytes)), seq_len + 1
    what = f"{label} ({n_bytes} bytes)"
    if n_train < window:
        raise ValueError(f"seq_len: the training split of {what} has {n_train} bytes, fewer than seq_len + 1 = "
                         f"{window}; use a shorter seq_len or more text")
    if n_bytes - n_train < window:
        raise ValueError(f"val_fraction: the validation split of {what} has {n_bytes - n_train} bytes, fewer "
                         f"than seq_len + 1 = {window}; raise val_fraction or use more text")
    return n_train
