"""What runs inside a sweep worker: one `train()` per task, with a set number of torch threads.

The local executor's workers train straight into the run folder and the store (`run_task`). A Ray
task trains into a temporary folder without a store and returns its records (`train_detached`),
which the driver writes with the same `record.record_run`, so the store is written by one process
that may be on another machine.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import tempfile
import threading
import time
from typing import Any

import torch

from lrtransfer import store
from lrtransfer.config import validate
from lrtransfer.record import RunRecords
from lrtransfer.sweep.tasks import Task
from lrtransfer.trial import run_planned

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
    """Train one planned run into its folder, recorded in the store (resumes, or skips a finished
    run; a folder finished before its store row is reconciled first).

    An exception inside the built-in trainer is recorded as a `failed` run and re-raised here, so
    the executor sees it as this task's failure; a user objective's failure is recorded and
    returned as a `failed` summary.
    """
    config, db = validate(task.config), store.open(task.store)
    return run_planned(config, task.folder, store=db, sweep=task.sweep, phase=task.phase, arm=task.arm).summary


def train_detached(config: dict[str, Any], threads: int, phase: int | str | None = None,
                   arm: str | None = None) -> RunRecords:
    """Train one run in a temporary folder without a store (a Ray task); return its records, for
    the driver to write into the run folder and the store."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="lrtransfer-") as tmp:
        return run_planned(validate(config), tmp, phase=phase, arm=arm)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
