"""JSON-lines streams that survive a kill: one record per line, non-finite floats as strings.

JSON has no NaN/inf, so they are written as "nan"/"inf"/"-inf" (the run store parses them back).
A reader keeps every complete record and ignores a last line torn by a kill.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable


def encode(record: dict[str, Any]) -> str:
    """One line: the record as JSON, non-finite floats as strings."""
    return json.dumps({k: str(v) if isinstance(v, float) and not math.isfinite(v) else v
                       for k, v in record.items()}) + "\n"


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
