"""A progress bar (step, loss, it/s) on a terminal, quiet otherwise."""

from __future__ import annotations

import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class _Bar:
    def __init__(self, total: int, start: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(), transient=True,
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


class _Quiet:
    def update(self, step: int, loss: float) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, start: int = 0, *, enabled: bool | None = None):
    """A rich bar when `enabled` (default: stderr is a terminal), else a no-op."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return _Bar(total, start) if enabled else _Quiet()
