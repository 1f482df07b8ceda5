"""Strict JSON for everything the tool writes: JSON-lines streams, the run store's columns, hashes.

JSON has no NaN/inf, so they are written as "nan"/"inf"/"-inf" and `loads` parses them back.
A JSON-lines stream survives a kill: one record per line, and a reader keeps every complete record,
skipping any line that does not decode (torn by a kill, or damaged) and going on with the lines
after it. An append after a torn last line starts a new line, so the fragment never swallows the
next record.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def jsonable(obj: Any, where: str = "value", canonical: bool = False) -> Any:
    """Plain JSON values: numpy as Python, tuples as lists, non-finite floats as "nan"/"inf"/"-inf";
    `canonical` also writes integral floats as ints (for hashing)."""
    obj = obj.tolist() if isinstance(obj, (np.generic, np.ndarray)) else obj
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v, f"{where}.{k}", canonical) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]", canonical) for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return int(obj) if canonical and isinstance(obj, float) and obj.is_integer() else obj
    raise TypeError(f"{where}: {type(obj).__name__} is not JSON-serialisable")


def dumps(obj: Mapping[str, Any], where: str = "value", canonical: bool = False, **kw: Any) -> str:
    """Strict JSON of a dict, keys sorted (`jsonable`); extra keywords go to `json.dumps`."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"{where}: expected a dict, got {type(obj).__name__}")
    return json.dumps(jsonable(obj, where, canonical), sort_keys=True, allow_nan=False, **kw)


def loads(text: str | None) -> Any:
    """Parse `dumps` output back, "nan"/"inf"/"-inf" strings as floats; None for a non-string."""
    def decode(obj: Any) -> Any:
        if isinstance(obj, (dict, list)):
            return {k: decode(v) for k, v in obj.items()} if isinstance(obj, dict) else [decode(v) for v in obj]
        return _NONFINITE.get(obj, obj) if isinstance(obj, str) else obj
    return decode(json.loads(text)) if isinstance(text, str) else None  # NULL may arrive as NaN from pandas


def encode(record: Mapping[str, Any]) -> str:
    """One line: the record as strict JSON (`jsonable`), in its own key order."""
    return json.dumps(jsonable(record, "record"), allow_nan=False) + "\n"


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
