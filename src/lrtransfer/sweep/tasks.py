"""What an executor is handed (`Task`: one distinct run) and hands back (`Outcome`) and the dispatch
order; shared by the local and the Ray executor (their progress display: `lrtransfer.sweep.progress`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from lrtransfer.phases import Phase
from lrtransfer.records.store import SKIPPED


@dataclass(frozen=True)
class Task:
    """One distinct run to train: its resolved config (as a dict), folder and store."""

    config: dict[str, Any]
    config_hash: str
    folder: str  # the run folder, DIR/runs/<config_hash>
    store: str  # path of the sweep's runs.db
    sweep: str  # the sweep's name, recorded in the store
    label: str  # where it was planned, for messages: "phase 2 independent 4× lr=0.004 seed 0"
    phase: Phase | None = None  # where the plan first put the run (a user objective sees it as trial.phase)
    arm: str | None = None
    timeout_s: float | None = None  # seconds the run may take before the local executor stops it (spec `timeout`)

    @property
    def steps(self) -> int:
        """The run's optimizer steps; a user objective of unknown length counts as one."""
        return self.config["run"].get("steps") or 1

    @property
    def width(self) -> int:
        return self.config["model"]["width"]

    @property
    def cost(self) -> float:
        """Relative compute: steps × width² (the hidden matmuls dominate)."""
        return self.steps * self.width**2


@dataclass(frozen=True)
class Outcome:
    """How a task ended: done | diverged | failed (`error` says why) | skipped (finished before)."""

    task: Task
    status: str
    error: str | None = None
    loss: float | None = None  # the run's final_train_loss (None unless done)
    wall_s: float | None = None  # the run's training time (summary `wall_s`)


class Executor(Protocol):
    """Runs tasks (each writes its run folder and store rows) and reports how each ended."""

    def run(self, tasks: list[Task], label: str) -> list[Outcome]: ...

    def close(self) -> None: ...


def by_cost(tasks: Iterable[Task]) -> list[Task]:
    """Most expensive first, so the cheap runs fill the gaps at the end (longest-processing-time packing)."""
    return sorted(tasks, key=lambda t: -t.cost)


def outcome_of(task: Task, summary: dict[str, Any]) -> Outcome:
    """The outcome of a run that returned `summary` (train()'s, possibly of a run finished before)."""
    status = SKIPPED if SKIPPED in summary else summary["status"]
    return Outcome(task, status, summary.get("error"), loss=_number(summary.get("final_train_loss")),
                   wall_s=_number(summary.get("wall_s")))


def _number(value: Any) -> float | None:
    """A finite float, else None (summaries hold NaN, or "nan" when read back from JSON)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None

