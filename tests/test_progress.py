"""Progress where no terminal is: a sweep's plan and per-run lines with a cost-weighted, worker-aware
ETA, and `train`'s step lines; silent where progress is off (sweep workers)."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from lrtransfer.config import resolve
from lrtransfer.records import store
from lrtransfer.sweep import run_sweep
from lrtransfer.sweep.progress import Dispatch, RunTimes, SweepProgress, plan_line, run_line
from lrtransfer.sweep.tasks import Outcome, Task, outcome_of
from lrtransfer.training import progress as train_progress
from lrtransfer.training import train
from lrtransfer.training.progress import duration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def task(name: str, width: int, db: str = "never-opened.db") -> Task:
    return Task(config={"run": {"steps": 10}, "model": {"width": width}}, config_hash=name, folder=f"runs/{name}",
                store=db, sweep="s", label=f"phase 2 arm {name} w{width}")


# Costs 160, 40, 40, 10 (steps × width²) at 0.1 s per unit on 2 workers, dispatched largest first:
# A runs 0-16 s on one worker; B 0-4, C 4-8, D 8-9 on the other.
TASKS = [task("D", 1), task("B", 2), task("A", 4), task("C", 2)]
FINISH = [("B", 4.0, 4.0), ("C", 8.0, 4.0), ("D", 9.0, 1.0), ("A", 16.0, 16.0)]  # (task, at, wall_s)
ETA_AFTER = [12.0, 8.0, 7.0, 0.0]  # when A ends, minus now
# SweepProgress predicts run times itself: from one width a run's time is taken as linear in width
# (A: 8 s, D: 2 s, so ETAs 6 s, 2 s); once D has finished too (widths 1, 2) the fitted exponent is 2: exact.


@pytest.mark.parametrize("text, seconds", [("0s", 0.2), ("42s", 42), ("3m05s", 185), ("1h02m", 3725),
                                           ("?", float("nan"))])
def test_duration(text, seconds):
    assert duration(seconds) == text


def test_dispatch_eta_packs_the_queue_onto_the_workers():
    clock, by_name = Clock(), {t.config_hash: t for t in TASKS}
    dispatch = Dispatch(TASKS, workers=2, now=0.0)
    assert set(dispatch.running) == {"A", "B"} and dispatch.eta(tenth_of_cost, 0.0) == pytest.approx(16.0)
    assert Dispatch(TASKS, workers=1, now=0.0).eta(tenth_of_cost, 0.0) == pytest.approx(25.0)  # serial: the sum
    assert Dispatch(TASKS, workers=8, now=0.0).eta(tenth_of_cost, 0.0) == pytest.approx(16.0)  # the largest run
    for (name, at, _), eta in zip(FINISH, ETA_AFTER):
        clock.now = at
        dispatch.finish(by_name[name], at)
        assert dispatch.eta(tenth_of_cost, at) == pytest.approx(eta)


def tenth_of_cost(t: Task) -> float:
    return 0.1 * t.cost


def test_run_times_fit_the_width_exponent():
    times = RunTimes()
    times.add(1000, 16, 12.6)  # the demo's per-run times on a fast machine: widths 16 and 64
    assert times.exponent() == 1.0 and times.seconds()(task("x", 32)) == pytest.approx(12.6 / 1000 * 10 * 2)
    times.add(1000, 64, 48.4)
    p = math.log(48.4 / 12.6) / math.log(4)
    assert times.exponent() == pytest.approx(p) and 0.9 < p < 1.0
    a = (12.6 + 48.4) / (1000 * 16**p + 1000 * 64**p)
    assert times.seconds()(task("y", 32)) == pytest.approx(a * 10 * 32**p)
    times.add(500, 32, float("nan"))  # not a time: ignored
    assert times.runs == 2


def test_sweep_lines_from_synthetic_outcomes(tmp_path, capsys):
    tasks = [task(t.config_hash, t.config["model"]["width"], str(tmp_path / "runs.db")) for t in TASKS]  # empty
    clock, by_name = Clock(), {t.config_hash: t for t in tasks}
    with SweepProgress("phase 2", tasks, workers=2, clock=clock) as bar:  # capsys: stderr is no terminal
        for name, at, wall in FINISH:
            clock.now = at
            bar.advance(Outcome(by_name[name], "done", loss=2.5, wall_s=wall))
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "phase 2: 4 runs to train on 2 workers; time estimate after the first run finishes",
        "phase 2: 1/4 done, 0 failed, 3 left | phase 2 arm B w2: loss 2.5000 in 4s | elapsed 4s | ETA 6s",
        "phase 2: 2/4 done, 0 failed, 2 left | phase 2 arm C w2: loss 2.5000 in 4s | elapsed 8s | ETA 2s",
        "phase 2: 3/4 done, 0 failed, 1 left | phase 2 arm D w1: loss 2.5000 in 1s | elapsed 9s | ETA 7s",
        "phase 2: 4/4 done, 0 failed, 0 left | phase 2 arm A w4: loss 2.5000 in 16s | elapsed 16s | ETA 0s",
    ]


def test_plan_line_estimates_from_the_stores_finished_runs(tmp_path, capsys):
    db = store.open(tmp_path / "runs.db")
    run_id = db.start_run({"any": "config"})
    db.finish(run_id, "done", {"status": "done", "steps": 10, "width": 2, "wall_s": 4.0})  # A 8 s, B, C 4, D 2
    failed = db.start_run({"other": "config"})
    db.finish(failed, "failed", {"status": "failed", "error": "x"})  # no time: not counted
    tasks = [task(t.config_hash, t.config["model"]["width"], str(db.path)) for t in TASKS]
    with SweepProgress("phase 1", tasks, workers=2, clock=Clock()):
        pass
    assert capsys.readouterr().err.splitlines() == [
        "phase 1: 4 runs to train on 2 workers; estimated 10s on this machine (from 1 finished run)"]
    assert plan_line("dynamics", 1, 1, 65.0, 3) == ("dynamics: 1 run to train on 1 worker; estimated 1m05s on "
                                                    "this machine (from 3 finished runs)")


def test_outcome_carries_the_runs_loss_and_time():
    t = TASKS[0]
    done = outcome_of(t, {"status": "done", "final_train_loss": 2.25, "wall_s": 3.5})
    diverged = outcome_of(t, {"status": "diverged", "final_train_loss": float("nan"), "wall_s": 1.0})
    assert (done.loss, done.wall_s, diverged.loss) == (2.25, 3.5, None)
    assert outcome_of(t, {"status": "done", "final_train_loss": "nan", "skipped": "yes"}).status == "skipped"


@pytest.mark.parametrize("outcome, result", [
    (Outcome(TASKS[0], "skipped"), "already finished"),
    (Outcome(TASKS[0], "diverged", wall_s=3.2), "diverged in 3s"),
    (Outcome(TASKS[0], "failed", "ValueError: paths: 'x' matches no file\nTraceback ..."),
     "FAILED: ValueError: paths: 'x' matches no file"),
])
def test_run_line_of_each_ending(outcome, result):
    line = run_line("phase 1", {"done": 1, "failed": 1, "left": 2}, outcome, 75.0, None)
    assert line == f"phase 1: 1/4 done, 1 failed, 2 left | phase 2 arm D w1: {result} | elapsed 1m15s | ETA ?"


RUN = re.compile(r"^(phase 1|phase 2): (\d+)/(\d+) done, (\d+) failed, (\d+) left \| (phase [12] standard "
                 r"[12]x lr=\S+ seed 0): (loss \d+\.\d{4} in \d+s|diverged in \d+s) \| elapsed \d+s \| "
                 r"ETA (\d+s|\?)$")


def test_local_sweep_prints_a_line_per_finished_run(tmp_path, capfd):
    spec = {"name": "lines", "base": {"preset": "lm-tiny", "overrides": {"run.steps": 6, "run.checkpoint_every": 0,
                                                                          "run.eval_every": 0}},
            "widths": [1, 2], "lrs": [1e-2, 30.0], "rules": ["standard"]}
    assert run_sweep(spec, tmp_path / "sweep", workers=2).ok
    err = capfd.readouterr().err.splitlines()
    lines = [line for line in err if line.startswith("phase")]
    assert lines[0] == "phase 1: 2 runs to train on 2 workers; time estimate after the first run finishes"
    assert re.fullmatch(r"phase 2: 3 runs to train on 2 workers; estimated \d+s on this machine "
                        r"\(from 1 finished run\)", lines[3])  # the lr=30 run diverged: its time is not a rate
    runs = [RUN.match(line) for line in lines[1:3] + lines[4:]]
    assert all(runs), lines
    assert [(m[1], int(m[2]), int(m[3]), int(m[4]), int(m[5])) for m in runs] == [
        ("phase 1", 1, 2, 0, 1), ("phase 1", 2, 2, 0, 0),
        ("phase 2", 1, 3, 0, 2), ("phase 2", 2, 3, 0, 1), ("phase 2", 3, 3, 0, 0)]
    assert {m[6] for m in runs} == {"phase 1 standard 1x lr=0.01 seed 0", "phase 1 standard 1x lr=30 seed 0",
                                    "phase 2 standard 1x lr=30 seed 0", "phase 2 standard 2x lr=0.01 seed 0",
                                    "phase 2 standard 2x lr=30 seed 0"}
    assert runs[-1][8] == "0s" and sum(m[7].startswith("diverged") for m in runs) == 3
    # ETA "?" only while no run has finished `done` (the lr=30 run diverges first, and has no rate)
    assert all(m[8] != "?" for m in runs[1:]) and (runs[0][8] == "?") == runs[0][7].startswith("diverged")
    assert not any(line.startswith("train:") for line in err)  # the workers train with progress off


def test_sweep_progress_off_is_silent(tmp_path, capfd):
    with SweepProgress("phase 1", TASKS, enabled=False) as bar:
        bar.advance(Outcome(TASKS[0], "done", loss=1.0, wall_s=1.0))
    assert capfd.readouterr().err == ""


# --- train ---------------------------------------------------------------------------------------

def test_train_lines_every_tenth_and_every_30s(monkeypatch, capsys):
    clock = Clock()
    lines = train_progress._Lines(total=100, start=20, clock=clock)
    for step in range(20, 60):  # 1 s per step: 10 % (10 steps) comes before 30 s
        clock.now += 1.0
        lines.update(step, loss=float(step))
    monkeypatch.setattr(train_progress, "LINE_EVERY_S", 5.0)
    for step in range(60, 73):  # 1 s per step, now every 5 s, ending early (diverged at step 72)
        clock.now += 1.0
        lines.update(step, loss=1.0)
    lines.close()
    assert capsys.readouterr().err.splitlines() == [
        "train: 100 steps, resuming at step 20",
        "train: step 21/100 (21%) loss 20.0000 | 1.0 steps/s | elapsed 1s | ETA 1m19s",
        "train: step 30/100 (30%) loss 25.0000 | 1.0 steps/s | elapsed 10s | ETA 1m10s",
        "train: step 40/100 (40%) loss 34.5000 | 1.0 steps/s | elapsed 20s | ETA 1m00s",
        "train: step 50/100 (50%) loss 44.5000 | 1.0 steps/s | elapsed 30s | ETA 50s",
        "train: step 60/100 (60%) loss 54.5000 | 1.0 steps/s | elapsed 40s | ETA 40s",
        "train: step 65/100 (65%) loss 1.0000 | 1.0 steps/s | elapsed 45s | ETA 35s",
        "train: step 70/100 (70%) loss 1.0000 | 1.0 steps/s | elapsed 50s | ETA 30s",
        "train: step 73/100 (73%) loss 1.0000 | 1.0 steps/s | elapsed 53s | ETA 27s",
    ]


def test_train_logs_lines_without_a_terminal_and_nothing_when_off(tmp_path, capfd):
    config = resolve(preset="lm-tiny", overrides=["run.steps=20", "run.checkpoint_every=0", "run.eval_every=0"])
    train(config, tmp_path / "quiet", progress=False)
    assert capfd.readouterr().err == ""
    train(config, tmp_path / "lines")
    steps = [int(m[1]) for m in re.finditer(r"^train: step (\d+)/20 \(\d+%\) loss \d+\.\d{4} \| ",
                                            capfd.readouterr().err, re.MULTILINE)]
    assert steps == [1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]


def test_cli_train_piped_to_a_log_prints_steps(tmp_path):
    cmd = [sys.executable, "-m", "lrtransfer.cli", "train", "--preset", "lm-tiny", "--out", str(tmp_path / "run"),
           "run.steps=10", "run.checkpoint_every=0", "run.eval_every=0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "train: 10 steps" in proc.stderr and "train: step 10/10 (100%) loss " in proc.stderr


def test_terminal_bar_counts_runs_and_advances_by_cost(capsys):
    with SweepProgress("phase 2", TASKS, workers=2, enabled=True, clock=Clock()) as bar:
        bar.advance(Outcome(TASKS[2], "done", loss=1.0, wall_s=16.0))  # A: 160 of 250 cost units
        bar.advance(Outcome(TASKS[1], "failed", "boom"))
        task = bar._bar.tasks[0]
        assert (task.completed, task.total, task.fields["done"], task.fields["failed"]) == (200, 250, 1, 1)
    shown = capsys.readouterr()
    assert "phase 2" in shown.err and shown.out == ""  # rich draws on stderr, never on stdout
