"""Where a sweep stands (`lrtransfer status DIR`), read from its folder while it runs or after.

Per stage (phase 1, phase 2, dynamics): the distinct runs planned so far and how many are done,
diverged, failed, running or pending, and the stage's elapsed wall time (from its first run's start
to its last run's end, or to now while runs are in flight). A run shared by two stages (the 1× runs
of phase 1 and 2) counts in both, and its time in the first. Then the best phase-1 LR of each arm
(once phase 1 has finished: what phase 2 freezes), and each run in flight with its last logged step.

Only reads: ``plan.csv`` (written atomically), the run store (SQLite in WAL mode, so a reader
never blocks the sweep's writers; opened read-only, a missing one reads as empty)
and the run folders' ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from lrtransfer.analysis.picks import phase1_picks
from lrtransfer.phases import Phase
from lrtransfer.records import store
from lrtransfer.records.store import DIVERGED, DONE, FAILED, PENDING, RUNNING
from lrtransfer.sweep.plan import PLAN_FILE
from lrtransfer.sweep.spec import SPEC_FILE, read_written_spec
from lrtransfer.sweep.tables import STORE_FILE, results
from lrtransfer.training.progress import duration

COUNTED = (DONE, DIVERGED, FAILED, RUNNING, PENDING)


@dataclass
class SweepStatus:
    """A sweep folder's state: `stages` (one row per planned stage: runs, `COUNTED`, elapsed_s),
    `unplanned` stages of the spec, phase-1 `best` LR per arm, lines for the runs in flight."""

    dir: Path
    name: str
    stages: pd.DataFrame
    unplanned: list[str] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    running: list[str] = field(default_factory=list)
    distinct: int = 0

    def text(self) -> str:
        """The status as a few lines for the terminal."""
        lines = [f"{self.dir}: sweep {self.name}, {self.distinct} distinct runs planned so far"]
        table = self.stages.assign(elapsed=[duration(s) for s in self.stages["elapsed_s"]])
        table = table.drop(columns="elapsed_s")
        lines += table.to_string(index=False).splitlines()
        lines += [f"{stage}: not planned yet" for stage in self.unplanned]
        if self.best:
            lines.append("best phase-1 LR: " + ", ".join(f"{arm} {lr:g}" for arm, lr in self.best.items()))
        return "\n".join(lines + [f"running: {line}" for line in self.running])


def sweep_status(dir: str | Path, now: float | None = None) -> SweepStatus:
    """The state of the sweep in `dir` (see the module doc); `now` (epoch seconds) for tests."""
    dir, now = Path(dir), time.time() if now is None else now
    if not (dir / PLAN_FILE).is_file():
        raise FileNotFoundError(f"dir: {dir} holds no sweep (no {PLAN_FILE}); is it a `lrtransfer sweep --out` folder?")
    df, spec = results(dir), _spec(dir)
    timings = store.open(dir / STORE_FILE, readonly=True).runs()[["config_hash", "started_at", "finished_at"]]
    df = df.merge(timings, on="config_hash", how="left")
    first = df.drop_duplicates("config_hash")  # the stage that planned a run first trained it
    stages = [_stage_row(phase, rows, first[first["phase"] == phase], now) for phase, rows
              in df.groupby("phase", sort=False)]
    planned = set(df["phase"])
    phase1 = df[df["phase"] == Phase.ONE]
    finished = len(phase1) and not phase1["status"].isin([RUNNING, PENDING]).any()
    return SweepStatus(dir=dir, name=str(spec.get("name", dir.name)), stages=pd.DataFrame(stages),
                       unplanned=[s.title for s in _spec_stages(spec) if s not in planned],
                       best=phase1_picks(phase1) if finished else {}, distinct=df["config_hash"].nunique(),
                       running=[_in_flight(row, now) for row in first[first["status"] == RUNNING].itertuples()])


def _stage_row(phase, rows: pd.DataFrame, owned: pd.DataFrame, now: float) -> dict:
    runs = rows.drop_duplicates("config_hash")
    counts = runs["status"].value_counts()
    return {"stage": Phase(phase).title, "runs": len(runs),
            **{s: int(counts.get(s, 0)) for s in COUNTED}, "elapsed_s": _elapsed(owned, now)}


def _elapsed(runs: pd.DataFrame, now: float) -> float:
    """First start to last end of `runs` (now for one not finished), in seconds; 0 if none started."""
    started = runs.dropna(subset=["started_at"])
    if started.empty:
        return 0.0
    ends = [now if pd.isna(f) else f.timestamp() for f in started["finished_at"]]
    return max(0.0, max(ends) - started["started_at"].min().timestamp())


def _in_flight(row, now: float) -> str:
    """``phase 2 independent 4x lr=0.004 seed 0: step 340/1000, last logged 2s ago``."""
    folder = Path(row.folder)
    label = f"{Phase(row.phase).title} {row.arm} {row.width_mult:g}x lr={row.lr:g} seed {row.seed}"
    metrics, config = folder / "metrics.jsonl", folder / "config.yaml"
    if not metrics.is_file():
        return f"{label}: starting"
    steps = (yaml.safe_load(config.read_text())["run"].get("steps") or "?") if config.is_file() else "?"
    step = _last_step(metrics)
    return f"{label}: step {step}/{steps}, last logged {duration(now - metrics.stat().st_mtime)} ago"


def _last_step(path: Path) -> int | str:
    """The step of the last complete line of a JSON-lines metric stream (read from its tail)."""
    with open(path, "rb") as fh:
        start = max(0, fh.seek(0, 2) - 4096)
        fh.seek(start)
        lines = fh.read().split(b"\n")
    for line in reversed(lines[1:] if start else lines):  # read from mid-file, the first line may be cut
        try:
            return int(json.loads(line)["step"]) + 1
        except (ValueError, KeyError, TypeError):
            continue
    return "?"


def _spec(dir: Path) -> dict:
    """The sweep's written spec ({} before the sweep wrote one)."""
    return read_written_spec(dir) if (dir / SPEC_FILE).exists() else {}


def _spec_stages(spec: dict) -> list[Phase]:
    """The stages the sweep's spec will plan (phase 1 only for the two-phase protocol)."""
    if not spec:
        return []
    two_phase = spec.get("protocol", "two_phase") == "two_phase"
    return [Phase.ONE] * two_phase + [Phase.TWO] + [Phase.DYNAMICS] * bool(spec.get("dynamics"))
