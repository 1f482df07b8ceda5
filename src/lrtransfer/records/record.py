"""A run's records — the files of its folder and its rows in the run store — written by one path.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one row per step:
``step, train_loss``, and ``val_loss`` rows), ``alignment.jsonl`` (the monitor's records),
``summary.json`` (written last: its presence with a finished status means the run ended) and a
checkpoint. `record_run` is what every trainer calls when a run ends — the built-in loop, the
local sweep worker, the Ray driver and user objectives — with the records it holds in memory, so
nothing is read back from disk. `reconcile` repairs the one gap a kill can leave: a folder whose
summary says finished while its store row does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrtransfer.config import config_hash
from lrtransfer.records import atomic, jsonl
from lrtransfer.records.store import FAILED, FINISHED, RunStore

CONFIG = "config.yaml"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
ALIGNMENT = "alignment.jsonl"


@dataclass
class RunRecords:
    """Everything a finished run reports: its summary, metric rows and alignment records."""

    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    alignment: list[dict[str, Any]] = field(default_factory=list)


def series(rows: list[Mapping[str, Any]]) -> list[tuple[int, str, float]]:
    """Metric rows as the store's (step, name, value) triples."""
    return [(int(r["step"]), name, float(v)) for r in rows for name, v in r.items()
            if name != "step" and v is not None]


def record_run(folder: str | Path, store: RunStore | None, run_id: int | None, records: RunRecords) -> None:
    """Write ``summary.json`` into `folder`, then record the run in `store` (if given): its metric
    series and alignment records, then its status, from the in-memory `records`."""
    write_summary(Path(folder), records.summary)
    if store is None or run_id is None:
        return
    if records.summary["status"] != FAILED:
        store.log_series(run_id, series(records.metrics))
        if records.alignment:
            store.log_alignment(run_id, records.alignment)
    store.finish(run_id, records.summary["status"], records.summary)


def write_streams(folder: str | Path, records: RunRecords) -> None:
    """Write a run's metric streams into `folder` (a remote run's records, on the driver)."""
    folder = Path(folder)
    for name, rows in ((METRICS, records.metrics), (ALIGNMENT, records.alignment)):
        (folder / name).unlink(missing_ok=True)
        if rows:
            jsonl.append(folder / name, rows)


def write_summary(folder: Path, summary: Mapping[str, Any]) -> None:
    """``summary.json`` as strict JSON, written atomically and fsynced (a reader never sees half of
    it; a full disk leaves the previous file, or none)."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_json(folder / SUMMARY, summary)


def read_summary(folder: str | Path) -> dict[str, Any] | None:
    """The folder's summary, or None when it has none or it cannot be read (not finished)."""
    summary = atomic.read_json(Path(folder) / SUMMARY)
    return summary if isinstance(summary, dict) else None


def finished_summary(folder: str | Path) -> dict[str, Any] | None:
    """The summary of a run that ended (done or diverged) in `folder`, else None."""
    summary = read_summary(folder)
    return summary if summary is not None and summary.get("status") in FINISHED else None


def reconcile(folder: str | Path, store: RunStore | None, config: Mapping[str, Any],
              sweep: str | None = None) -> dict[str, Any] | None:
    """The summary of an already finished run of `config`, making folder and store agree.

    The store's word counts first (a `done` row is finished wherever its folder is). A folder
    that holds a finished summary while the store's row is missing or not finished — a kill
    between the two writes — is recorded now from the folder's files. None: not finished.
    """
    if store is not None and (row := store.find(config_hash(config))) is not None and row["status"] in FINISHED:
        return row["summary"]
    summary = finished_summary(folder)
    if summary is None or store is None:
        return summary
    folder = Path(folder)
    records = RunRecords(summary, jsonl.read(folder / METRICS), jsonl.read(folder / ALIGNMENT))
    record_run(folder, store, store.start_run(config, sweep=sweep), records)
    return summary
