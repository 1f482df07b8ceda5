"""What an executor is handed (`Task`: one distinct run) and hands back (`Outcome`), the
dispatch order and the sweep's progress bar; shared by the local and the Ray executor."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@dataclass(frozen=True)
class Task:
    """One distinct run to train: its resolved config (as a dict), folder and store."""

    config: dict[str, Any]
    config_hash: str
    folder: str  # the run folder, DIR/runs/<config_hash>
    store: str  # path of the sweep's runs.db
    sweep: str  # the sweep's name, recorded in the store
    label: str  # where it was planned, for messages: "phase 2 independent 4× lr=0.004 seed 0"

    @property
    def cost(self) -> float:
        """Relative compute: steps × width² (the hidden matmuls dominate)."""
        return self.config["run"]["steps"] * self.config["model"]["width"] ** 2


@dataclass(frozen=True)
class Outcome:
    """How a task ended: done | diverged | failed (`error` says why) | skipped (finished before)."""

    task: Task
    status: str
    error: str | None = None


class Executor(Protocol):
    """Runs tasks (each writes its run folder and store rows) and reports how each ended."""

    def run(self, tasks: list[Task], label: str) -> list[Outcome]: ...

    def close(self) -> None: ...


def by_cost(tasks: Iterable[Task]) -> list[Task]:
    """Most expensive first, so the cheap runs fill the gaps at the end (longest-processing-time packing)."""
    return sorted(tasks, key=lambda t: -t.cost)


def outcome_of(task: Task, summary: dict[str, Any]) -> Outcome:
    """The outcome of a run that returned `summary` (train()'s, possibly of a run finished before)."""
    status = "skipped" if "skipped" in summary else summary["status"]
    return Outcome(task, status, summary.get("error"))


class SweepProgress:
    """A rich bar over runs (done/failed counts, elapsed, ETA) on a terminal; silent otherwise."""

    def __init__(self, label: str, total: int, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.failed = 0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), disable=not self.enabled,
        )
        self._task = self._progress.add_task(label, total=total, failed=0)

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        return self

    def advance(self, outcome: Outcome) -> None:
        self.failed += outcome.status == "failed"
        self._progress.update(self._task, advance=1, failed=self.failed)

    def __exit__(self, *exc) -> None:
        self._progress.stop()
