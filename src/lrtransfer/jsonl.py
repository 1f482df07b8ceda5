"""JSON-lines streams that survive a kill, and the strict JSON every file of the tool is written in.

JSON has no NaN/inf, so they are written as "nan"/"inf"/"-inf" (the run store and `decode` parse
them back), at any depth; nothing writes a bare ``NaN``. A stream holds one record per line; a
reader keeps every complete record and skips any line that does not decode (one torn by a kill, or
damaged), going on with the lines after it. An append after a torn last line starts a new line, so
the torn fragment never swallows the next record.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def strict(obj: Any) -> Any:
    """`obj` with every non-finite float (at any depth of dicts, lists, tuples) as its string."""
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)  # "nan", "inf", "-inf"
    return obj


def decode(obj: Any) -> Any:
    """The inverse of `strict`: "nan"/"inf"/"-inf" strings (at any depth) back to floats."""
    if isinstance(obj, dict):
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return NONFINITE.get(obj, obj) if isinstance(obj, str) else obj


def dumps(obj: Any, **kwargs) -> str:
    """Strict JSON text of `obj` (`json.dumps` keyword arguments pass through)."""
    if kwargs.get("default") is not None:  # what `default` returns must be made strict too
        fallback = kwargs["default"]
        kwargs["default"] = lambda o: strict(fallback(o))
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def encode(record: dict[str, Any]) -> str:
    """One line: the record as strict JSON."""
    return dumps(record) + "\n"


def append(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records and close (hence flush) the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(encode(r) for r in records)
    with path.open("ab+") as f:
        if f.tell() and not _ends_with_newline(f):  # a kill tore the last line: leave it on its own
            text = "\n" + text
        f.write(text.encode())


def read(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a JSON-lines file, in order ([] if it does not exist); lines that do
    not decode to a JSON object are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a torn or damaged line (JSONDecodeError, UnicodeDecodeError)
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _ends_with_newline(f) -> bool:
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b"\n"
