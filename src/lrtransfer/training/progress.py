"""A run's progress: a rich bar (step, loss, it/s) on a terminal, plain lines in a log, or nothing.

Plain lines (stderr is not a terminal: a log file, CI, nohup, a Ray job) go to stderr, flushed::

    train: 1500 steps
    train: step 1/1500 (0%) loss 5.5452 | 3.1 steps/s | elapsed 0s | ETA 8m03s
    train: step 150/1500 (10%) loss 2.9120 | 12.4 steps/s | elapsed 12s | ETA 1m49s

A line after the first step (the run has started, its initial loss), then at every 10% of the run
and at least every 30 s in between (whichever comes first), and at the last step — so a short run
prints about a dozen lines and a long one never stays silent for more than 30 s. The loss is the
mean over the steps since the previous line (smoother than one step's); steps/s counts the steps
this process ran, so a resumed run's ETA is not flattered by the steps done before.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

LINE_FRACTION = 0.1  # a line at every 10% of the run
LINE_EVERY_S = 30.0  # and at least this often


class _Bar:
    def __init__(self, total: int, start: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(), transient=True, console=Console(stderr=True),
        )
        self._task = self._progress.add_task("train", total=total, completed=start, loss=float("nan"), rate="")
        self._progress.start()

    def update(self, step: int, loss: float) -> None:
        task = self._progress.tasks[0]
        speed = task.speed
        rate = f"{speed:.1f} it/s" if speed else ""
        self._progress.update(self._task, completed=step + 1, loss=loss, rate=rate)

    def close(self) -> None:
        self._progress.stop()


class _Lines:
    """Plain progress lines on stderr (see the module doc); `clock` is injectable for tests."""

    def __init__(self, total: int, start: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.start, self.clock = total, start, clock
        self.stride = max(1, math.ceil(total * LINE_FRACTION))
        self.t0 = self.last_t = clock()
        self.last_step, self.losses = start, []
        resumed = f", resuming at step {start}" if start else ""
        _say(f"train: {total} steps{resumed}")

    def update(self, step: int, loss: float) -> None:
        done, now = step + 1, self.clock()
        self.losses.append(loss)
        first = done == self.start + 1
        crossed = done // self.stride > self.last_step // self.stride
        if first or crossed or done == self.total or now - self.last_t >= LINE_EVERY_S:
            self._line(done, now)

    def close(self) -> None:
        if self.losses:  # steps since the last line: a run that stopped early (diverged)
            self._line(self.last_step + len(self.losses), self.clock())

    def _line(self, done: int, now: float) -> None:
        elapsed, ran = now - self.t0, done - self.start
        speed = ran / elapsed if elapsed > 0 else math.nan
        eta = (self.total - done) / speed if speed > 0 else math.nan
        loss = sum(self.losses) / len(self.losses)
        _say(f"train: step {done}/{self.total} ({100 * done // self.total}%) loss {loss:.4f} | "
             f"{speed:.1f} steps/s | elapsed {duration(elapsed)} | ETA {duration(eta)}")
        self.last_step, self.last_t, self.losses = done, now, []


class _Quiet:
    def update(self, step: int, loss: float) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, start: int = 0, *, enabled: bool | None = None):
    """Progress of a run of `total` steps from `start`: a rich bar on a terminal, plain lines when
    stderr is not one (see the module doc); `enabled=False` is silent (sweep workers), True a bar."""
    if enabled is False:
        return _Quiet()
    if enabled or sys.stderr.isatty():
        return _Bar(total, start)
    return _Lines(total, start)


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``; ``?`` when not known (NaN)."""
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
