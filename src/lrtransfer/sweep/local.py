"""The local executor: a pool of worker processes on this machine, each training one run at a time.

Processes are spawned (a forked torch is not safe) and each uses `threads` torch threads; on a
2-core machine two 1-thread workers beat one 2-thread process by about 15%. Runs are dispatched
most expensive first. A run that raises is recorded `failed` (by `train()`) and the sweep goes on.
On a machine with GPUs each worker holds a GPU slot (`lrtransfer.sweep.placement`), so there are
as many workers as slots unless `workers` asks for fewer.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from lrtransfer import store
from lrtransfer.config import ConfigError
from lrtransfer.sweep import worker
from lrtransfer.sweep.placement import Placement, init_placed_worker
from lrtransfer.sweep.progress import SweepProgress
from lrtransfer.sweep.tasks import Outcome, Task, by_cost, outcome_of


def default_workers(threads: int = 1) -> int:
    """As many workers as this process may use cores, divided by the threads of each."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // threads)


class LocalExecutor:
    """`workers` processes × `threads` torch threads; the pool starts on the first task and is kept
    across the sweep's phases, so a sweep with nothing left to run starts no process."""

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
        self._pool: ProcessPoolExecutor | None = None
        self._slot_locks: str | None = None  # the folder of the GPU slots' lock files, while the pool lives

    def run(self, tasks: list[Task], label: str) -> list[Outcome]:
        """Train `tasks` in the pool; one `Outcome` per task, in the order they finished."""
        if not tasks:
            return []
        pool = self._start()
        futures = {pool.submit(worker.run_task, task): task for task in by_cost(tasks)}
        outcomes = []
        with SweepProgress(label, tasks, self.workers, self.progress) as bar:
            for future in as_completed(futures):
                outcomes.append(self._outcome(futures[future], future))
                bar.advance(outcomes[-1])
        if any(o.error and o.error.startswith("BrokenProcessPool") for o in outcomes):
            self.close()  # a worker died (killed, out of memory): start a fresh pool next time
        return outcomes

    def close(self) -> None:
        """Stop the worker processes (they finish nothing new)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._slot_locks is not None:
            shutil.rmtree(self._slot_locks, ignore_errors=True)
            self._slot_locks = None

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            init, args = worker.init_worker, (self.threads, os.getpid())
            if self.slots:  # each worker claims a GPU slot first
                self._slot_locks = tempfile.mkdtemp(prefix="lrtransfer-gpus-")
                init, args = init_placed_worker, (self._slot_locks, self.slots, init, *args)
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=init, initargs=args,
            )
        return self._pool

    @staticmethod
    def _outcome(task: Task, future: Future) -> Outcome:
        try:
            return outcome_of(task, future.result())
        except BrokenProcessPool as err:
            return Outcome(task, store.FAILED, f"BrokenProcessPool: a worker process died ({err})")
        except Exception as err:  # recorded as failed in the store by train(); the sweep goes on
            return Outcome(task, store.FAILED, f"{type(err).__name__}: {err}")

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
