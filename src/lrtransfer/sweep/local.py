"""The local executor: `workers` worker processes on this machine, each training one run at a time.

Workers are fresh interpreters (`worker.COMMAND`: a forked torch is not safe) and each uses `threads`
torch threads (more 1-thread workers beat fewer many-thread ones on a small machine: bench/README.md).
Runs are dispatched most expensive first, each to the first free worker. A run that raises is
recorded `failed` (by `train()`) and the sweep goes on. A worker that dies (killed, out of memory,
``os._exit``) or outlives the task's timeout costs that one run: the driver records it `failed` with
the cause and the tail of the run's ``output.log``, and the next run gets a new worker. A Ctrl-C of
the driver stops the workers and leaves their runs `running`, to resume on the next call.
On a machine with GPUs each worker holds a GPU slot (`lrtransfer.sweep.placement`): the driver starts
it with ``CUDA_VISIBLE_DEVICES`` set to the slot's GPUs, and a worker that dies frees its slot for
the one that replaces it. There are as many workers as slots unless `workers` asks for fewer.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path

from lrtransfer.config import ConfigError
from lrtransfer.objectives.load import ObjectiveError
from lrtransfer.records import store
from lrtransfer.records.record import RunRecords, record_run
from lrtransfer.sweep import worker
from lrtransfer.sweep.placement import VISIBLE, Placement
from lrtransfer.sweep.progress import SweepProgress
from lrtransfer.sweep.tasks import Outcome, Task, by_cost, outcome_of

TAIL_LINES = 3  # lines of a dead worker's output quoted in its run's error


def default_workers(threads: int = 1) -> int:
    """As many workers as this process may use cores, divided by the threads of each."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // threads)


class _Worker:
    """One worker process and the driver's end of its pipe; `task` is the run it trains, if any;
    `slot` the index of the GPU slot it holds (None on CPU)."""

    def __init__(self, threads: int, slot: int | None = None, gpus: tuple[str, ...] = ()) -> None:
        ours, theirs = multiprocessing.Pipe()
        fd = theirs.fileno()
        env = {**_worker_env(), **({VISIBLE: ",".join(gpus)} if slot is not None else {})}
        self.process = subprocess.Popen([sys.executable, "-c", worker.COMMAND, str(fd), str(threads), str(os.getpid())],
                                        pass_fds=(fd,), env=env)
        self.slot = slot
        theirs.close()
        self.conn = ours
        self.task: Task | None = None
        self.started: float | None = None  # when the worker began the task
        self.result: worker.Reply | None = None

    def start(self, task: Task) -> _Worker:
        self.task, self.started, self.result = task, None, None
        with contextlib.suppress(OSError):  # a worker that died already: its pipe reads as closed
            self.conn.send(task)
        return self

    def receive(self) -> bool:
        """Read what the worker sent; True once the task ended (`result`: its reply, or None when the
        worker died and its pipe closed without one). The clock starts at the worker's ``started``."""
        try:
            reply = self.conn.recv()
        except (EOFError, OSError):
            return True
        if reply.kind == "started":
            self.started = time.monotonic()
            return False
        self.result = reply
        return True

    @property
    def deadline(self) -> float:
        """When the task's timeout runs out (counted from when the worker began it; inf without one)."""
        if self.task is None or self.task.timeout_s is None or self.started is None:
            return float("inf")
        return self.started + self.task.timeout_s

    def stop(self) -> int:
        """Kill the worker (if still alive) and return its exit status (negative: the signal)."""
        self.conn.close()
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()


class LocalExecutor:
    """`workers` processes × `threads` torch threads; workers start with the first task and are
    kept across the sweep's phases, so a sweep with nothing left to run starts no process."""

    def __init__(self, workers: int | None = None, threads: int = 1, progress: bool | None = None,
                 placement: Placement | None = None) -> None:
        if threads < 1:
            raise ValueError(f"threads: must be >= 1, got {threads}")
        self.slots = (placement or Placement()).local_slots()
        self.workers = (len(self.slots) or default_workers(threads)) if workers is None else workers
        if self.workers < 1:
            raise ValueError(f"workers: must be >= 1, got {self.workers}")
        if self.slots and self.workers > len(self.slots):
            raise ConfigError(f"workers: {self.workers} parallel runs, but the GPUs give {len(self.slots)} slots "
                              "(raise runs_per_gpu, or give gpus=none to train on CPU)")
        self.threads, self.progress = threads, progress
        self._idle: list[_Worker] = []
        self._busy: list[_Worker] = []

    def run(self, tasks: list[Task], label: str) -> list[Outcome]:
        """Train `tasks` on the workers; one `Outcome` per task, in the order they finished."""
        queue, outcomes = deque(by_cost(tasks)), []
        with SweepProgress(label, tasks, self.workers, self.progress) as bar:
            while queue or self._busy:
                while queue and len(self._busy) < self.workers:
                    self._busy.append(self._free_worker().start(queue.popleft()))
                for done in self._wait():
                    outcomes.append(self._outcome(done))
                    bar.advance(outcomes[-1])
        return outcomes

    def close(self) -> None:
        """Stop the worker processes: idle ones exit, busy ones are killed (their runs resume later)."""
        for w in self._idle + self._busy:
            w.stop()
        self._idle, self._busy = [], []

    def _free_worker(self) -> _Worker:
        if self._idle:
            return self._idle.pop()
        if not self.slots:
            return _Worker(self.threads)
        held = {w.slot for w in self._idle + self._busy}
        slot = next(i for i in range(len(self.slots)) if i not in held)  # a dead worker's slot is free again
        return _Worker(self.threads, slot, self.slots[slot])

    def _wait(self) -> list[_Worker]:
        """The busy workers whose task ended: replied, died or ran past its timeout."""
        timeout = max(0.0, min(w.deadline for w in self._busy) - time.monotonic())
        ready = wait([w.conn for w in self._busy], None if timeout == float("inf") else timeout)
        ended = [w for w in self._busy if w.conn in ready and w.receive()]
        return ended + [w for w in self._busy if w not in ended and time.monotonic() >= w.deadline]

    def _outcome(self, w: _Worker) -> Outcome:
        self._busy.remove(w)
        task, reply, wall_s = w.task, w.result, time.monotonic() - (w.started or time.monotonic())
        timed_out = reply is None and time.monotonic() >= w.deadline
        w.task = None
        if reply is not None:
            self._idle.append(w)
            if reply.kind == "objective":  # the same for every run: stop the sweep with the reason
                raise ObjectiveError(f"base.{reply.error}")
            if reply.kind == "error":
                return Outcome(task, store.FAILED, reply.error)
            return outcome_of(task, reply.summary)
        status = w.stop()
        cause = f"timeout after {task.timeout_s:g} s" if timed_out else _death(status)
        return record_failure(task, f"{cause}; {tail(Path(task.folder) / worker.OUTPUT)}", wall_s)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def record_failure(task: Task, error: str, wall_s: float) -> Outcome:
    """Record `task` failed with `error` in its folder and the store (its worker could not), unless
    the store shows it finished first."""
    db = store.open(task.store)
    row = db.find(task.config_hash)
    if row is not None and row["status"] in store.FINISHED:
        return outcome_of(task, row["summary"])
    run_id = row["run_id"] if row is not None and row["status"] == store.RUNNING else db.start_run(
        task.config, sweep=task.sweep)
    summary = {"status": store.FAILED, "error": error, "wall_s": wall_s, "width": task.width, "folder": task.folder}
    record_run(task.folder, db, run_id, RunRecords(summary))
    return Outcome(task, store.FAILED, error)


def tail(path: Path, lines: int = TAIL_LINES, limit: int = 400) -> str:
    """``last output: …``: the last non-empty `lines` of a log as one line (`` | `` between them)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 8192))
            text = fh.read().decode(errors="replace")
    except OSError:
        text = ""
    last = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return f"last output: {' | '.join(last)[-limit:]}" if last else "no output"


def _death(status: int) -> str:
    """A dead worker's exit status in words."""
    if status >= 0:
        return f"the worker process exited with code {status}"
    name = signal.Signals(-status).name
    return f"the worker process was killed by {name}" + (" (out of memory?)" if -status == signal.SIGKILL else "")


def _worker_env() -> dict[str, str]:
    """This process's environment, with its import path first (the worker imports what it can)."""
    paths = [p for p in sys.path if p]
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys([*paths, *current]))}
