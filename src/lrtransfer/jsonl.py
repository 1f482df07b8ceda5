"""Strict JSON for everything the tool writes: JSON-lines streams, the run store's columns, hashes.

JSON has no NaN/inf, so they are written as "nan"/"inf"/"-inf" and `loads` parses them back.
A JSON-lines stream survives a kill: one record per line, and a reader keeps every complete record.
"""

from __future__ import annotations

import json
import math
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
    with path.open("a") as f:
        f.write("".join(encode(r) for r in records))


def read(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a JSON-lines file ([] if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows
