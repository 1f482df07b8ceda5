"""Deterministic, offline datasets whose training batch is a pure function of ``(seed, step)``.

Three tasks, one interface (:class:`Dataset`): byte-level language modelling on a text corpus
(``kind="text"``), 8x8 digit classification (``kind="digits"``) and teacher-network regression
(``kind="synthetic"``). Pick one with a :data:`DataConfig` (a union of `DATA_SOURCES`) and build
it with ``config.build()``; a corpus that must be fetched once is fetched first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Union

from pydantic import Field

from lrtransfer.data.base import Dataset, DataSourceConfig, TaskKind, step_generator
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

DATA_SOURCES: tuple[type[DataSourceConfig], ...] = (TextDataConfig, DigitsDataConfig, SyntheticDataConfig)
DataConfig = Annotated[Union[DATA_SOURCES], Field(discriminator="kind")]  # noqa: UP007 - built from a tuple


def ensure_corpora(configs: Iterable[DataSourceConfig]) -> None:
    """Fetch every corpus these data configs need that is not cached yet (each once), e.g. in a
    sweep's driver before its workers start, so a failed fetch stops the sweep once, early."""
    for config in {c.model_dump_json(): c for c in configs}.values():
        config.ensure_available()


__all__ = [
    "DATA_SOURCES",
    "CorpusFetchError",
    "CorpusNotFoundError",
    "DataConfig",
    "DataSourceConfig",
    "Dataset",
    "DigitsDataConfig",
    "DigitsDataset",
    "SyntheticDataConfig",
    "SyntheticDataset",
    "TaskKind",
    "TextDataConfig",
    "TextDataset",
    "ensure_corpora",
    "ensure_corpus",
    "fetch_shakespeare",
    "shakespeare_path",
    "step_generator",
]
