"""Deterministic, offline datasets whose training batch is a pure function of ``(seed, step)``.

Three tasks, one interface (:class:`Dataset`): byte-level language modelling on a text corpus
(``kind="text"``), 8x8 digit classification (``kind="digits"``) and teacher-network regression
(``kind="synthetic"``). Pick one with a :data:`DataConfig` and build it with :func:`build_dataset`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from lrtransfer.data.base import Dataset, Task, step_generator
from lrtransfer.data.corpus import (
    CorpusFetchError,
    CorpusNotFoundError,
    ensure_corpus,
    fetch_shakespeare,
    shakespeare_path,
)
from lrtransfer.data.digits import DigitsDataConfig, DigitsDataset
from lrtransfer.data.synthetic import SyntheticDataConfig, SyntheticDataset
from lrtransfer.data.text import TextDataConfig, TextDataset

DataConfig = Annotated[TextDataConfig | DigitsDataConfig | SyntheticDataConfig, Field(discriminator="kind")]

_ADAPTER: TypeAdapter[DataConfig] = TypeAdapter(DataConfig)


def parse_data_config(raw: Any) -> DataConfig:
    """Validate a mapping (e.g. from YAML) into the config class its ``kind`` names."""
    return _ADAPTER.validate_python(raw)


def build_dataset(cfg: DataConfig) -> Dataset:
    """The dataset described by ``cfg``; a text corpus that must be fetched once is fetched first."""
    if isinstance(cfg, TextDataConfig):
        return TextDataset(cfg)
    if isinstance(cfg, DigitsDataConfig):
        return DigitsDataset(cfg)
    if isinstance(cfg, SyntheticDataConfig):
        return SyntheticDataset(cfg)
    raise TypeError(
        f"cfg: expected a TextDataConfig, DigitsDataConfig or SyntheticDataConfig, got {type(cfg).__name__}"
    )


def ensure_corpora(configs: Iterable[DataConfig]) -> None:
    """Fetch every corpus these data configs need that is not cached yet (each once), e.g. in a
    sweep's driver before its workers start, so a failed fetch stops the sweep once, early."""
    for corpus in dict.fromkeys(c.corpus for c in configs if isinstance(c, TextDataConfig)):
        ensure_corpus(corpus)


__all__ = [
    "CorpusFetchError",
    "CorpusNotFoundError",
    "DataConfig",
    "Dataset",
    "DigitsDataConfig",
    "DigitsDataset",
    "SyntheticDataConfig",
    "SyntheticDataset",
    "Task",
    "TextDataConfig",
    "TextDataset",
    "build_dataset",
    "ensure_corpora",
    "ensure_corpus",
    "fetch_shakespeare",
    "parse_data_config",
    "shakespeare_path",
    "step_generator",
]
