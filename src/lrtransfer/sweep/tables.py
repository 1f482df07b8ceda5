"""A sweep folder's results as DataFrames: the plan joined with the run store.

`results(dir)` has one row per planned (phase, arm, width, lr, seed) — runs shared by several rows
appear in each — with the store's status (`pending` where the store has no row yet, `running` for
a run in flight or killed), summary values and resolved config (a dict; None while pending).
`alignment(dir, rows)` stacks the per-layer alignment records of those rows (Eq 2, 4), each
labelled with its plan columns.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lrtransfer.records import jsonl, store
from lrtransfer.sweep.plan import read_plan

STORE_FILE = "runs.db"
RESULT_COLUMNS = ("phase", "arm", "width_mult", "width", "lr", "fixed_lr", "seed", "config_hash", "status",
                  "final_train_loss", "val_loss", "diverged_at", "wall_s", "folder", "config")
LABEL_COLUMNS = ("config_hash", "arm", "phase", "width_mult", "width", "lr", "seed")


def results(dir: str | Path) -> pd.DataFrame:
    """One row per planned run of the sweep in `dir`: `RESULT_COLUMNS` (docs/study.md)."""
    dir = Path(dir)
    return join_store(read_plan(dir), store.open(dir / STORE_FILE, readonly=True), dir)


def join_store(plan: pd.DataFrame, db: store.RunStore, dir: Path) -> pd.DataFrame:
    """`plan` rows with the store's status and summary values; `folder` made `dir/runs/<hash>`."""
    runs = db.runs()[["config_hash", "status", "final_train_loss", "val_loss", "diverged_at", "wall_s", "config"]]
    runs = runs.assign(config=[jsonl.loads(c) for c in runs["config"]])
    df = plan.merge(runs, on="config_hash", how="left", validate="many_to_one")
    df["status"] = df["status"].fillna(store.PENDING)
    df["folder"] = [str(dir / f) for f in plan["folder"]]
    return df[list(RESULT_COLUMNS)]


def alignment(dir: str | Path, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """The store's alignment records of `rows` (a subset of `results(dir)` or of the plan; default:
    every planned run), with `LABEL_COLUMNS` in front. Rows whose run has not started are left out."""
    dir = Path(dir)
    rows = read_plan(dir) if rows is None else rows
    db = store.open(dir / STORE_FILE, readonly=True)
    frames, cache = [], {}
    for label in rows[list(LABEL_COLUMNS)].to_dict("records"):
        h = label["config_hash"]
        if h not in cache:
            found = db.find(h)
            cache[h] = None if found is None else db.alignment(found["run_id"])
        if cache[h] is not None and len(cache[h]):
            frames.append(cache[h].assign(**label)[[*LABEL_COLUMNS, *cache[h].columns]])
    if not frames:
        return pd.DataFrame(columns=[*LABEL_COLUMNS, *store.ALIGN_KEYS, *store.ALIGN_METRICS])
    return pd.concat(frames, ignore_index=True)
