"""Command objectives (`base.command`): a real process per trial — its fields and environment, the
losses it reports, a non-zero exit, a divergence that stops it, a resume — recorded in a real store."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from torch import nn

import lrtransfer
from lrtransfer.config import validate
from lrtransfer.objectives.command import argv, reported
from lrtransfer.objectives.script import LOSSES, trial_env
from lrtransfer.objectives.trial import run_trial
from lrtransfer.records import jsonl, store
from lrtransfer.sweep import SpecError, load_spec

# A training script that knows nothing of lrtransfer: it appends JSON lines to $LRTRANSFER_LOSSES.
SCRIPT = textwrap.dedent("""\
    import json, os, pathlib, sys, time
    args = dict(a.removeprefix("--").split("=", 1) for a in sys.argv[1:])
    seen = {"argv": sys.argv[1:], "cwd": os.getcwd(),
            "env": {k: v for k, v in os.environ.items() if k.startswith("LRTRANSFER_") or k == "OMP_NUM_THREADS"}}
    pathlib.Path("seen.json").write_text(json.dumps(seen))
    mode, ckpt = args.get("mode", "train"), pathlib.Path("ckpt.json")
    if mode == "fail":
        for i in range(30):
            print(f"stderr line {i}" if i != 5 else "[rank1]: ValueError: width 32 is odd", file=sys.stderr)
        sys.exit(3)
    if mode == "silent":
        sys.exit(0)
    start = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    for step in range(start, 8):
        loss = float("nan") if mode == "diverge" and step == 2 else 2.0 / (step + 1) + float(args["lr"])
        with open(os.environ["LRTRANSFER_LOSSES"], "a") as f:
            f.write(json.dumps({"step": step, "loss": loss, **({"val_loss": loss} if step == 7 else {})}) + "\\n")
        if mode == "diverge" and step == 2:
            time.sleep(60)
        if step == 3:
            ckpt.write_text(json.dumps({"step": 4}))
        if mode == "crash" and step == 5 and not pathlib.Path("crashed").exists():
            pathlib.Path("crashed").touch()
            sys.exit("simulated crash after step 5")
""")


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


def config(command: str, **params):
    return validate({"objective": "lrtransfer.objectives.command:objective", "params": {"command": command, **params},
                     "model": {"width": 32, "base_width": 16},
                     "optim": {"lr": 4e-3, "fixed_lr": 1e-2, "weight_decay": 0.1, "wd_scaling": "standard"},
                     "run": {"seed": 3, "steps": 8, "final_window": 2}})


def command(script, mode: str = "train") -> str:
    return f"{sys.executable} {script} --lr={{lr}} --width={{width}} --out={{folder}} --depth={{depth}} --mode={mode}"


def test_the_command_gets_its_values_and_its_losses_are_recorded(tmp_path, script, monkeypatch):
    db = store.open(tmp_path / "runs.db")
    cfg = config(command(script), depth=2)
    monkeypatch.chdir(tmp_path)  # a relative run folder: the command sees it absolute
    summary = run_trial(cfg, Path("run"), store=db, phase=2, arm="standard").summary
    seen = json.loads((tmp_path / "run" / "seen.json").read_text())
    assert seen["cwd"] == str(tmp_path / "run")
    assert seen["argv"] == ["--lr=0.004", "--width=32", f"--out={tmp_path / 'run'}", "--depth=2", "--mode=train"]
    env = seen["env"]
    assert (env["LRTRANSFER_LR"], env["LRTRANSFER_WIDTH"], env["LRTRANSFER_BASE_WIDTH"]) == ("0.004", "32", "16")
    assert (env["LRTRANSFER_WD_SCALING"], env["LRTRANSFER_NO_DECAY"], env["LRTRANSFER_PHASE"]) == (
        "standard", "gain", "2")
    assert json.loads(env["LRTRANSFER_PARAMS"]) == {"depth": 2} and int(env["OMP_NUM_THREADS"]) >= 1
    losses = [2.0 / (s + 1) + 4e-3 for s in range(8)]
    assert summary["status"] == "done" and summary["steps"] == 8
    assert summary["final_train_loss"] == pytest.approx(sum(losses[-2:]) / 2)
    assert summary["val_loss"] == pytest.approx(losses[-1])
    row = db.find(cfg.hash())
    assert row["status"] == "done" and db.series(row["run_id"], "train_loss")["value"].tolist() == pytest.approx(losses)


def test_a_non_zero_exit_is_failed_with_the_tail_of_stderr(tmp_path, script):
    db = store.open(tmp_path / "runs.db")
    summary = run_trial(config(command(script, "fail"), depth=1), tmp_path / "run", store=db).summary
    assert summary["status"] == "failed"
    error = summary["error"]
    assert error.startswith("CommandFailed: the command exited with code 3; first error in its stderr: [rank1]: "
                            "ValueError: width 32 is odd; the end of its stderr (command.err):\n")
    assert error.endswith("stderr line 29") and "stderr line 10\n" in error and "stderr line 9\n" not in error


def test_a_diverged_loss_stops_the_command(tmp_path, script):
    t0 = time.perf_counter()
    summary = run_trial(config(command(script, "diverge"), depth=1), tmp_path / "run").summary
    assert summary["status"] == "diverged" and summary["diverged_at"] == 2
    assert time.perf_counter() - t0 < 20  # not the script's 60 s sleep


def test_a_command_that_reports_nothing_fails(tmp_path, script):
    summary = run_trial(config(command(script, "silent"), depth=1), tmp_path / "run").summary
    assert summary["status"] == "failed" and "the command reported no loss" in summary["error"]


def test_a_failed_command_resumes_from_its_own_checkpoint(tmp_path, script):
    db = store.open(tmp_path / "runs.db")
    cfg = config(command(script, "crash"), depth=1)
    first = run_trial(cfg, tmp_path / "run", store=db).summary
    assert first["status"] == "failed" and first["error"].endswith("simulated crash after step 5")
    again = run_trial(cfg, tmp_path / "run", store=db).summary  # restarts at step 4: steps 4 and 5 again
    clean = run_trial(config(command(script), depth=1), tmp_path / "clean").summary
    steps = [r["step"] for r in jsonl.read(tmp_path / "run" / "metrics.jsonl")]
    assert again["status"] == "done" and steps == list(range(8))
    assert again["final_train_loss"] == clean["final_train_loss"]


def test_reported_rows_restart_where_the_script_restarts(tmp_path):
    path = tmp_path / "losses.jsonl"
    jsonl.append(path, [{"step": s, "loss": float(s)} for s in (0, 1, 2, 3)])
    jsonl.append(path, [{"step": s, "loss": 10.0 + s} for s in (2, 3, 4)] + [{"step": 5, "train_loss": "nan"}])
    rows = reported(path)
    assert [(r["step"], r["loss"]) for r in rows[:-1]] == [(0, 0.0), (1, 1.0), (2, 12.0), (3, 13.0), (4, 14.0)]
    assert rows[-1]["step"] == 5 and math.isnan(rows[-1]["loss"])


def test_fields_fill_each_argument_after_splitting():
    assert argv("torchrun -m train --out={folder} --tag '{arm} run'", {"folder": "/a b/c", "arm": "x"}) == [
        "torchrun", "-m", "train", "--out=/a b/c", "--tag", "x run"]


def test_the_script_reads_the_rule_and_reports_from_rank_0(tmp_path, monkeypatch):
    values = {"width": 64, "base_width": 32, "width_mult": 2.0, "lr": 0.01, "fixed_lr": 0.02, "weight_decay": 0.5,
              "lr_scaling": "mup", "wd_scaling": "independent", "no_decay": ("gain", "bias"), "seed": 1,
              "steps": None, "phase": 1, "arm": "independent", "folder": tmp_path, "losses": tmp_path / "l.jsonl"}
    trial = lrtransfer.command_trial(trial_env(values, {"depth": 2}))
    assert (trial.width, trial.base_width, trial.width_mult, trial.steps, trial.phase) == (64, 32, 2.0, None, "1")
    assert trial.params == {"depth": 2} and trial.folder == tmp_path
    assert trial.rules == {"lr": 0.01, "weight_decay": 0.5, "lr_scaling": "mup", "wd_scaling": "independent",
                           "fixed_lr": 0.02, "no_decay": ("gain", "bias")}
    groups = {g["role"]: g for g in lrtransfer.param_groups(nn.Linear(64, 64), nn.Linear(32, 32), **trial.rules)}
    assert groups["hidden"]["lr"] == 0.005 and groups["hidden"]["weight_decay"] == 1.0  # η/m, mλ (Eq 6, 8)
    assert lrtransfer.command_trial({}) is None
    lrtransfer.report_loss(0, 1.0)  # outside a study: nothing to write to
    monkeypatch.setenv(LOSSES, str(tmp_path / "l.jsonl"))
    monkeypatch.setenv("RANK", "1")
    lrtransfer.report_loss(0, 1.0)
    monkeypatch.setenv("RANK", "0")
    lrtransfer.report_loss(1, float("inf"), val_loss=2)
    assert jsonl.read(tmp_path / "l.jsonl") == [{"step": 1, "loss": "inf", "val_loss": 2.0}]


@pytest.mark.parametrize("base, message", [
    ({"command": "python -m train --lr={lrr}"}, "base: command: {lrr} is neither a trial value"),
    ({"command": "python -m train {"}, "base: command: 'python -m train {': Single '{'"),
    ({"command": "python -m train {a.b}"}, "fields are plain names like {lr}"),
    ({"command": "  "}, "base: command: is empty"),
    ({"command": "python -m train", "params": {"losses": 1}}, "base: params: 'losses' is a key of the command"),
    ({"preset": "lm-tiny", "losses": "l.jsonl", "base_width": None}, "base: losses: only used with command"),
    ({"command": "python -m train", "base_width": None}, "base: base_width: give it with objective or command"),
])
def test_command_spec_errors_name_the_field(base, message):
    with pytest.raises(SpecError) as err:
        load_spec({"base": {"base_width": 16, **base}, "lrs": [1e-3]})
    assert message in str(err.value)


@pytest.mark.slow
def test_a_killed_worker_stops_its_command(tmp_path):
    sleeper = f"{sys.executable} -c 'import os, time; open(\"pid\", \"w\").write(str(os.getpid())); time.sleep(120)'"
    runner = textwrap.dedent(f"""\
        from lrtransfer.config import validate
        from lrtransfer.objectives.trial import run_trial
        cfg = validate({{"objective": "lrtransfer.objectives.command:objective", "params": {{"command": {sleeper!r}}},
                         "model": {{"width": 16, "base_width": 16}}}})
        run_trial(cfg, {str(tmp_path / "run")!r})
    """)
    worker = subprocess.Popen([sys.executable, "-c", runner])
    pid_file = tmp_path / "run" / "pid"
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    command = int(pid_file.read_text())
    worker.kill()  # SIGKILL: no finally runs in the worker
    worker.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{command}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{command}").exists()
