"""What runs inside a sweep worker: one `train()` per task, with a set number of torch threads.

The local executor's workers train straight into the run folder and the store (`run_task`). A Ray
task trains into a temporary folder without a store and returns what the driver records
(`train_detached`), so the store is written by one process that may be on another machine.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from lrtransfer import store
from lrtransfer.config import RunConfig
from lrtransfer.sweep.tasks import Task
from lrtransfer.training import train
from lrtransfer.training.loop import SUMMARY, finish_run

RECORD_FILES = ("metrics.jsonl", "alignment.jsonl")  # the metric streams a remote run sends back
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def init_worker(threads: int, parent: int) -> None:
    """Process set-up: `threads` torch threads, and die with the sweep process `parent`, so a killed
    sweep leaves no orphan still writing run folders that its re-run is about to resume."""
    torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):  # the kernel kills us the moment the parent dies
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    else:  # elsewhere: poll
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def run_task(task: Task) -> dict[str, Any]:
    """Train one run into its folder, recorded in the store (resumes, or skips a finished run).

    An exception inside training is recorded by `train()` as a `failed` run and re-raised here, so
    the executor sees it as this task's failure.
    """
    config, db = RunConfig.model_validate(task.config), store.open(task.store)
    summary = train(config, task.folder, store=db, sweep=task.sweep, progress=False)
    if "skipped" in summary and not db.is_finished(task.config_hash):
        record_folder(task, db)  # killed between writing summary.json and the store: finish the record
    return summary


def train_detached(config: dict[str, Any], threads: int) -> dict[str, Any]:
    """Train one run in a temporary folder without a store (a Ray task); return its summary, the
    resolved config and the text of its metric streams, for the driver to record."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="lrtransfer-") as tmp:
        summary = train(RunConfig.model_validate(config), tmp, progress=False)
        files = {name: (Path(tmp) / name).read_text() for name in RECORD_FILES if (Path(tmp) / name).is_file()}
    return {"summary": summary, "config": config, "files": files}


def record_folder(task: Task, db: store.RunStore) -> dict[str, Any] | None:
    """Record a run whose folder already holds a finished summary but whose store row does not (or
    is missing); returns that summary, or None when the folder holds no finished run."""
    path = Path(task.folder) / SUMMARY
    summary = json.loads(path.read_text()) if path.is_file() else {}
    if summary.get("status") not in store.FINISHED:
        return None
    run_id = db.start_run(task.config, sweep=task.sweep)
    finish_run(Path(task.folder), db, run_id, summary)
    return summary


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
