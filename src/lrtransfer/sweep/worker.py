"""What runs inside a sweep worker: one `train()` per task, with a set number of torch threads.

A local worker is a fresh interpreter (`COMMAND`, never a fork of a torch process) that serves
tasks over a pipe until the driver closes it: it trains each task straight into its run folder and
the store (`run_task`), with the task's stdout and stderr in ``output.log`` of that folder, and
replies with a `Reply`. It does not import the driver's main script, so a script that starts a
study without an ``if __name__ == "__main__":`` guard is caught when its objective is imported
(`serving`). A Ray task trains into a temporary folder without a store and returns its records
(`train_detached`), which the driver writes with the same `record.record_run`, so the store
is written by one process that may be on another machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from lrtransfer.config import validate
from lrtransfer.objectives.load import ObjectiveError
from lrtransfer.objectives.trial import run_planned
from lrtransfer.phases import Phase
from lrtransfer.records import store
from lrtransfer.records.record import RunRecords
from lrtransfer.sweep.tasks import Task

OUTPUT = "output.log"  # a task's stdout and stderr, in its run folder
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_SERVING = False
# python -c COMMAND FD THREADS PARENT starts a worker
COMMAND = "import sys; from lrtransfer.sweep.worker import main; main(sys.argv[1:])"


@dataclass(frozen=True)
class Reply:
    """What a worker says about its task: ``started``, then how it ended: ``summary`` (the run's
    summary), ``error`` ("Type: message" of an exception `train()` re-raised) or ``objective`` (the
    objective cannot be imported here)."""

    kind: str
    summary: dict[str, Any] | None = None
    error: str | None = None


def main(argv: list[str] | None = None) -> None:
    """The worker process: ``FD THREADS PARENT`` — serve the tasks sent over the pipe FD."""
    fd, threads, parent = (int(a) for a in (argv or sys.argv[1:]))
    global _SERVING
    _SERVING = True
    init_worker(threads, parent)
    sys.stdout.reconfigure(line_buffering=True)  # what a worker that dies printed is in its log
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops its workers itself
    with Connection(fd) as conn:
        while True:
            try:
                task = conn.recv()
            except EOFError:  # the driver is done with this worker
                return
            conn.send(Reply("started"))  # the task's timeout counts from here, not from this process's start
            conn.send(serve(task))


def serving() -> bool:
    """Whether this process is a local sweep worker (where a study must not start another sweep)."""
    return _SERVING


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


def serve(task: Task) -> Reply:
    """Run one task with its output in its folder's `OUTPUT`; the working directory is restored after
    it, so an objective that changes it cannot move the next task's files."""
    cwd = os.getcwd()
    Path(task.folder).mkdir(parents=True, exist_ok=True)
    try:
        with _output_to(Path(task.folder) / OUTPUT):
            return Reply("summary", summary=run_task(task))
    except ObjectiveError as err:
        return Reply("objective", error=str(err))
    except Exception as err:  # recorded as failed in the store by train(); the sweep goes on
        return Reply("error", error=f"{type(err).__name__}: {err}")
    finally:
        os.chdir(cwd)


def run_task(task: Task) -> dict[str, Any]:
    """Train one planned run into its folder, recorded in the store (resumes, or skips a finished
    run; a folder finished before its store row is reconciled first).

    An exception inside the built-in trainer is recorded as a `failed` run and re-raised here, so
    the executor sees it as this task's failure; a user objective's failure is recorded and
    returned as a `failed` summary.
    """
    config, db = validate(task.config), store.open(task.store)
    return run_planned(config, task.folder, store=db, sweep=task.sweep, phase=task.phase, arm=task.arm).summary


def train_detached(config: dict[str, Any], threads: int, phase: Phase | None = None,
                   arm: str | None = None) -> RunRecords:
    """Train one run in a temporary folder without a store (a Ray task); return its records, for
    the driver to write into the run folder and the store."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="lrtransfer-") as tmp:
        return run_planned(validate(config), tmp, phase=phase, arm=arm)


@contextlib.contextmanager
def _output_to(path: Path):
    """Send this process's stdout and stderr (Python's and the file descriptors 1 and 2, so C
    libraries and child processes too) to the end of `path` while inside."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)

