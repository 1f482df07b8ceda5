"""Append-only JSON-lines metric streams in the run folder, trimmed back to the checkpoint on resume."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterator


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete records of a JSON-lines file (a torn last line from a kill is ignored)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def truncate_from(path: Path, step: int) -> None:
    """Drop records with `step >= step` (written after the checkpoint we resume from)."""
    if not path.is_file():
        return
    keep = [r for r in read_jsonl(path) if r.get("step", -1) < step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)


class MetricLog:
    """One JSON object per line: `{"step": t, "train_loss": ..., "lr/hidden": ...}` or a validation row."""

    def __init__(self, path: Path, *, resume_step: int = 0) -> None:
        self.path = path
        truncate_from(path, resume_step)
        self._file = path.open("a", buffering=1)  # line-buffered: a kill loses at most the current line

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")

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


def _clean(v: Any) -> Any:
    # JSON has no NaN/inf; a diverged loss is stored as a string the reader turns back into a float.
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v
