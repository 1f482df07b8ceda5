"""Append-only JSON-lines metric streams in the run folder, trimmed back to the checkpoint on resume."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from lrtransfer.jsonl import encode
from lrtransfer.jsonl import read as read_jsonl


def truncate_from(path: Path, step: int) -> None:
    """Drop records with `step >= step` (written after the checkpoint we resume from)."""
    if not path.is_file():
        return
    keep = [r for r in read_jsonl(path) if r.get("step", -1) < step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(encode(r) for r in keep))
    os.replace(tmp, path)


class MetricLog:
    """One JSON object per line: `{"step": t, "train_loss": ..., "lr/hidden": ...}` or a validation row."""

    def __init__(self, path: Path, *, resume_step: int = 0) -> None:
        self.path = path
        truncate_from(path, resume_step)
        self._file = path.open("a", buffering=1)  # line-buffered: a kill loses at most the current line

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(encode(row))

    def close(self) -> None:
        self._file.close()

    def rows(self) -> list[dict[str, Any]]:
        self._file.flush()
        return read_jsonl(self.path)


def tidy(rows: list[dict[str, Any]]) -> Iterator[tuple[int, str, float]]:
    """(step, name, value) triples for the run store."""
    for row in rows:
        step = int(row["step"])
        for name, value in row.items():
            if name != "step" and value is not None:
                yield step, name, float(value)
