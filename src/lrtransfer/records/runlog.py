"""Append-only JSON-lines metric streams in the run folder, trimmed back to the checkpoint on resume.

The rows a run keeps are also held in memory (`MetricLog.rows`), so the summary and the run store
are filled from them, not from reading the file back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lrtransfer.records import atomic
from lrtransfer.records.jsonl import encode
from lrtransfer.records.jsonl import read as read_jsonl


def truncate_from(path: Path, step: int) -> list[dict[str, Any]]:
    """Drop records with `step >= step` (written after the checkpoint we resume from); the kept ones."""
    if not path.is_file():
        return []
    keep = [r for r in read_jsonl(path) if r.get("step", -1) < step]
    atomic.write_text(path, "".join(encode(r) for r in keep))
    return keep


class MetricLog:
    """One JSON object per line: `{"step": t, "train_loss": ...}` or a validation row `{"step", "val_loss"}`."""

    def __init__(self, path: Path, *, resume_step: int = 0) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = truncate_from(path, resume_step)
        self._file = path.open("a", buffering=1)  # line-buffered: a kill loses at most the current line

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(encode(row))
        self.rows.append(row)

    def close(self) -> None:
        self._file.close()
