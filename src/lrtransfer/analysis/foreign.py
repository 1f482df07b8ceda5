"""Sweeps lrtransfer did not run: a table of (width, LR, loss) rows read into a results frame.

`read_sweep(path)` reads CSV, Parquet or JSON lines with one row per run — columns ``width`` or
``width_mult``, ``lr``, ``loss`` and optionally ``arm``, ``seed``, ``status`` (names settable) —
checks every value and returns the ``results`` frame the analysis reads (docs/study.md), so that
`analyze` gives the same verdicts, figures and recommendation as for a sweep of its own. A bad file
raises `ValueError` naming the file, the column and the row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lrtransfer.records.store import STATUSES

FIELDS = ("width", "width_mult", "lr", "loss", "arm", "seed", "status")
DEFAULT_ARM = "sweep"
METRIC = "final_train_loss"  # the results frame's loss column, as a sweep of its own writes it


def read_table(path: str | Path) -> pd.DataFrame:
    """The rows of a CSV (``.csv``), Parquet (``.parquet``) or JSON-lines (``.jsonl``/``.json``) file,
    every column read as text (no missing-value guessing: an arm named ``NA`` stays ``NA``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path).astype(str)
        if suffix in (".jsonl", ".json", ".ndjson"):
            return pd.read_json(path, lines=True, dtype=False).astype(str)
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except ImportError as err:
        raise ValueError(f"{path}: cannot read Parquet here ({err})") from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable table ({type(err).__name__}: {str(err).splitlines()[0]})") from None


def read_sweep(path: str | Path, columns: dict[str, str] | None = None, metric: str = METRIC) -> pd.DataFrame:
    """The results frame of the sweep in ``path``; ``columns`` maps a field of `FIELDS` to the
    file's column name (``{"loss": "val_loss"}``)."""
    raw = read_table(path)
    names = {field: (columns or {}).get(field, field) for field in FIELDS}
    return to_results(raw, names, where=str(path), metric=metric)


def to_results(raw: pd.DataFrame, names: dict[str, str], where: str, metric: str = METRIC) -> pd.DataFrame:
    """Check ``raw`` (columns as text) and turn it into a results frame; errors name ``where``."""
    for field in ("lr", "loss"):
        _require(raw, names[field], field, where)
    has_width, has_mult = names["width"] in raw, names["width_mult"] in raw
    if not (has_width or has_mult):
        raise ValueError(f"{where}: has neither a {names['width']!r} nor a {names['width_mult']!r} column "
                         f"(columns: {', '.join(map(str, raw.columns))})")
    if raw.empty:
        raise ValueError(f"{where}: has no rows")
    out = pd.DataFrame(index=raw.index)
    out["phase"] = 2
    out["arm"] = raw[names["arm"]].astype(str) if names["arm"] in raw else DEFAULT_ARM
    if (out["arm"] == "").any():
        raise ValueError(f"{where}: row {_row(out['arm'] == '')}: column {names['arm']!r} is empty (name every arm)")
    if has_width:
        out["width"] = _numbers(raw, names["width"], where, positive=True)
    out["width_mult"] = (_numbers(raw, names["width_mult"], where, positive=True) if has_mult
                         else out["width"] / out["width"].min())
    out["lr"] = _numbers(raw, names["lr"], where, positive=True)
    out["seed"] = _numbers(raw, names["seed"], where, integer=True) if names["seed"] in raw else 0
    out[metric] = _numbers(raw, names["loss"], where, allow_nan=True)
    out["status"] = _statuses(raw, names["status"], where) if names["status"] in raw else "done"
    out["config_hash"] = [f"row{i}" for i in range(len(out))]
    return out.reset_index(drop=True)


def _require(raw: pd.DataFrame, column: str, field: str, where: str) -> None:
    if column not in raw:
        raise ValueError(f"{where}: has no {column!r} column for the {field} (columns: "
                         f"{', '.join(map(str, raw.columns))}; name another with --{field.replace('_', '-')}-column)")


def _row(mask: pd.Series) -> int:
    """The file's row number (1 = the first data row) of the first True in ``mask``."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 1


def _numbers(raw: pd.DataFrame, column: str, where: str, *, positive: bool = False, integer: bool = False,
             allow_nan: bool = False) -> pd.Series:
    text = raw[column].astype(str).str.strip()
    values = pd.to_numeric(text.str.lower().replace({"": "nan", "none": "nan", "null": "nan"}), errors="coerce")
    missing = values.isna() & ~text.str.lower().isin(["nan", "", "none", "null", "inf", "-inf"])
    if missing.any():
        i = _row(missing)
        raise ValueError(f"{where}: row {i}: column {column!r} is not a number: {text.iloc[i - 1]!r}")
    bad = ~np.isfinite(values) if not allow_nan else pd.Series(False, index=values.index)
    if positive:
        bad |= ~(values > 0)
    if integer:
        bad |= values.notna() & (values != values.round())
    if bad.any():
        i = _row(bad)
        need = "a positive number" if positive else "an integer" if integer else "a finite number"
        raise ValueError(f"{where}: row {i}: column {column!r} must be {need}, got {text.iloc[i - 1]!r}")
    return values.astype(int) if integer else values.astype(float)


def _statuses(raw: pd.DataFrame, column: str, where: str) -> pd.Series:
    status = raw[column].astype(str).str.strip().str.lower()
    bad = ~status.isin(STATUSES)
    if bad.any():
        i = _row(bad)
        raise ValueError(f"{where}: row {i}: column {column!r} is {raw[column].iloc[i - 1]!r}, not one of "
                         f"{'|'.join(STATUSES)}")
    return status
