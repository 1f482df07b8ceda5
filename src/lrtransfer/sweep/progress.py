"""A sweep stage's progress: a rich bar on a terminal, plain lines in a log (file, CI, nohup, Ray job).

Lines go to stderr, flushed: first the stage's plan (runs to train, workers, and — once this sweep's
store holds finished runs — the estimated time on this machine), then one line per finished run::

    phase 2: 36 runs to train on 2 workers; estimated 6m10s on this machine (from 13 finished runs)
    phase 2: 3/36 done, 0 failed, 33 left | phase 2 independent 4x lr=0.004 seed 0: loss 2.3412 in 48s | \
elapsed 1m02s | ETA 5m40s

The ETA predicts each run's training time from the finished ones (this stage's and the store's
earlier ones) as ``a · steps · width^p`` (`RunTimes`: widths differ a lot, and a run's time grows
with its width more slowly than width² at CPU scale), then packs the remaining runs onto the
workers as the executors dispatch them — most expensive first, each to the first free worker —
starting from the runs in flight, each credited with the time it has already run; the ETA is when
the last worker is free. Training times (`wall_s`) leave out each run's set-up and final
evaluation, so the ETA is a little short for runs of a few seconds.
"""

from __future__ import annotations

import heapq
import math
import sys
import time
from collections import deque
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lrtransfer.records import store
from lrtransfer.records.store import DONE, FAILED, SKIPPED
from lrtransfer.sweep.tasks import Outcome, Task, by_cost
from lrtransfer.training.progress import duration


class RunTimes:
    """How long a run takes on this machine, from finished runs: ``a · steps · width^p`` seconds.

    `p` is fitted (least squares of log seconds-per-step on log width) once finished runs span two
    widths, else 1: at CPU scale fixed costs (embedding, output head, optimizer, data) hide most of
    the hidden matmuls' width² (bench/README.md has measured exponents). `a` makes the finished runs'
    total time exact.
    """

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float]] = []  # (steps, width, wall_s) of done runs

    def add(self, steps: float, width: float, wall_s: float | None) -> None:
        if wall_s is not None and math.isfinite(wall_s) and steps > 0 and width > 0:
            self.samples.append((float(steps), float(width), float(wall_s)))

    @property
    def runs(self) -> int:
        return len(self.samples)

    def exponent(self) -> float:
        """`p`: the fitted slope, clipped to [0, 3], or 1 while the runs span one width only."""
        x = [math.log(w) for _, w, _ in self.samples]
        y = [math.log(max(t, 1e-9) / s) for s, _, t in self.samples]
        mx, my = sum(x) / len(x), sum(y) / len(y)
        var = sum((xi - mx) ** 2 for xi in x)
        if var < 1e-12:
            return 1.0
        return min(3.0, max(0.0, sum((xi - mx) * (yi - my) for xi, yi in zip(x, y)) / var))

    def seconds(self) -> Callable[[Task], float] | None:
        """Predicted seconds of a task (None before any run finished)."""
        if not self.samples:
            return None
        p = self.exponent()
        a = sum(t for *_, t in self.samples) / sum(s * w**p for s, w, _ in self.samples)
        return lambda task: a * task.steps * task.width**p


def store_times(path: str) -> RunTimes:
    """The run times of the store's `done` runs (steps and width from their summaries)."""
    times = RunTimes()
    runs = store.open(path).runs()
    if {"width", "steps", "wall_s"} <= set(runs.columns):
        for row in runs[runs["status"] == DONE].itertuples():
            times.add(float(row.steps or 1), float(row.width), row.wall_s)
    return times


class Dispatch:
    """Which tasks run when: most expensive first, each to the first free one of `workers` slots."""

    def __init__(self, tasks: list[Task], workers: int, now: float) -> None:
        self.workers = workers
        self.queue = deque(by_cost(tasks))
        self.running: dict[str, tuple[Task, float]] = {}  # config hash → (task, start time)
        self._fill(now)

    def finish(self, task: Task, now: float) -> None:
        """`task` ended at `now`: its worker takes the next queued task."""
        if self.running.pop(task.config_hash, None) is None:
            self.queue = deque(t for t in self.queue if t.config_hash != task.config_hash)
        self._fill(now)

    def eta(self, seconds: Callable[[Task], float], now: float) -> float:
        """Seconds until the last worker is free: runs in flight first (each `seconds(task)` less the
        time it has run), then the queue, each to the first free worker."""
        free = [max(0.0, seconds(t) - (now - start)) for t, start in self.running.values()]
        free += [0.0] * (self.workers - len(free))
        heapq.heapify(free)
        for task in self.queue:
            heapq.heappush(free, heapq.heappop(free) + seconds(task))
        return max(free, default=0.0)

    def _fill(self, now: float) -> None:
        while self.queue and len(self.running) < self.workers:
            task = self.queue.popleft()
            self.running[task.config_hash] = (task, now)


def plan_line(label: str, runs: int, workers: int, eta: float | None, known: int) -> str:
    """The stage's first line: its runs, workers and (if any run finished before) estimated time."""
    head = f"{label}: {_count(runs, 'run')} to train on {_count(workers, 'worker')}"
    if eta is None:
        return f"{head}; time estimate after the first run finishes"
    return f"{head}; estimated {duration(eta)} on this machine (from {_count(known, 'finished run')})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def run_line(label: str, counts: dict[str, int], outcome: Outcome, elapsed: float, eta: float | None) -> str:
    """One finished run: counts done (incl. diverged)/failed/left, its label and result, elapsed, ETA."""
    total = sum(counts.values())
    head = f"{label}: {counts['done']}/{total} done, {counts['failed']} failed, {counts['left']} left"
    return (f"{head} | {outcome.task.label}: {result_text(outcome)} | elapsed {duration(elapsed)} | "
            f"ETA {'?' if eta is None else duration(eta)}")


def result_text(outcome: Outcome) -> str:
    """``loss 2.3412 in 48s``, ``diverged in 3s``, ``already finished`` or ``FAILED: <error>``."""
    took = "" if outcome.wall_s is None else f" in {duration(outcome.wall_s)}"
    if outcome.status == DONE:
        return ("loss ?" if outcome.loss is None else f"loss {outcome.loss:.4f}") + took
    if outcome.status == FAILED:
        error = (outcome.error or "").splitlines()[0] if outcome.error else "no error recorded"
        return f"FAILED: {error[:160]}"
    return "already finished" if outcome.status == SKIPPED else f"{outcome.status}{took}"


class SweepProgress:
    """Progress of one stage's `tasks` on `workers` parallel workers (see the module doc).

    `enabled`: True a rich bar, False silent, None (default) a bar on a terminal and lines otherwise.
    """

    def __init__(self, label: str, tasks: list[Task], workers: int = 1, enabled: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.tasks, self.workers, self.clock = label, tasks, workers, clock
        self.mode = "off" if enabled is False else "bar" if enabled or sys.stderr.isatty() else "lines"
        self.failed, self.times = 0, RunTimes()
        self.counts = {"done": 0, "failed": 0, "left": len(tasks)}
        self._bar = self._make_bar() if self.mode == "bar" else None

    def __enter__(self) -> SweepProgress:
        self.t0 = self.clock()
        self.dispatch = Dispatch(self.tasks, self.workers, self.t0)
        if self.mode == "lines":
            self.times = store_times(self.tasks[0].store) if self.tasks else RunTimes()
            self._say(plan_line(self.label, len(self.tasks), self.workers, self.eta(), self.times.runs))
        elif self._bar is not None:
            self._bar.start()
        return self

    def advance(self, outcome: Outcome) -> None:
        """Count a finished task (and print its line, or move the bar)."""
        now = self.clock()
        self.counts["failed" if outcome.status == FAILED else "done"] += 1
        self.counts["left"] -= 1
        self.failed = self.counts["failed"]
        self.dispatch.finish(outcome.task, now)
        if self.mode == "lines":
            if outcome.status == DONE:
                self.times.add(outcome.task.steps, outcome.task.width, outcome.wall_s)
            self._say(run_line(self.label, self.counts, outcome, now - self.t0, self.eta()))
        elif self._bar is not None:
            self._bar.update(self._task, advance=outcome.task.cost, done=self.counts["done"], failed=self.failed)

    def eta(self) -> float | None:
        """Seconds left in this stage, or None before any run's time is known."""
        seconds = self.times.seconds()
        return None if seconds is None else self.dispatch.eta(seconds, self.clock())

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def _make_bar(self) -> Progress:
        # Advanced by cost, so rich's own ETA is cost-weighted too; the counts are shown as text.
        bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[done]}/{task.fields[runs]}"),
            TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=Console(stderr=True),
        )
        self._task = bar.add_task(self.label, total=sum(t.cost for t in self.tasks), done=0, failed=0,
                                  runs=len(self.tasks))
        return bar

    @staticmethod
    def _say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
