"""The trainer end to end: files, determinism, kill-and-resume, divergence, store, DDP, config errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrtransfer.config import ConfigError, presets, resolve
from lrtransfer.records import store
from lrtransfer.records.runlog import read_jsonl
from lrtransfer.training import train

TINY = ["run.threads=1", "run.steps=12", "run.checkpoint_every=4", "run.eval_every=6"]


def tiny(*overrides: str):
    return resolve(preset="lm-tiny", overrides=[*TINY, *overrides])


def losses(folder: Path) -> list[float]:
    return [r["train_loss"] for r in read_jsonl(folder / "metrics.jsonl") if "train_loss" in r]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lrtransfer.cli", *args]


@pytest.mark.filterwarnings("ignore:Detected call of")  # no optimizer step needed here
@pytest.mark.parametrize("extra", [[], ["schedule.extra_warmup=exp", "model.width=64", "optim.fixed_lr=0.02"]])
def test_the_lrs_analysis_reads_are_the_lrs_the_optimizer_uses(extra):
    import torch

    from lrtransfer.analysis import layer_lrs
    from lrtransfer.training.distributed import Dist
    from lrtransfer.training.setup import build_parts

    config = tiny(*extra)
    parts = build_parts(config, torch.device("cpu"), Dist())
    expected = {role: layer_lrs(config, role)[0] for role in ("hidden", "output", "input", "gain")}
    for step in range(config.run.steps):
        for group in parts.optimizer.param_groups:
            assert group["lr"] == pytest.approx(expected[group["role"]][step], rel=1e-12), (step, group["role"])
        parts.scheduler.step()


def test_run_folder_is_self_describing(tmp_path):
    summary = train(tiny(), tmp_path / "run", progress=False)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "summary.json", "metrics.jsonl", "alignment.jsonl", "checkpoint.pt"} <= files
    assert summary["status"] == "done" and summary["steps"] == 12 and summary["diverged_at"] is None
    assert summary["final_train_loss"] == pytest.approx(sum(losses(tmp_path / "run")[-10:]) / 10)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    # every 6 steps (not at the last) + final, each labelled with the 0-based step it follows
    assert [r["step"] for r in rows if "val_loss" in r] == [5, 11]
    assert set(rows[0]) == {"step", "train_loss"}  # the per-step LRs are the config's (test below), not logged
    align = read_jsonl(tmp_path / "run" / "alignment.jsonl")
    assert sorted({r["step"] for r in align}) == [0, 10]
    assert {r["role"] for r in align} == {"hidden", "output"}


def test_same_config_and_seed_give_identical_losses(tmp_path):
    train(tiny(), tmp_path / "a", progress=False)
    train(tiny(), tmp_path / "b", progress=False)
    train(tiny("run.seed=1"), tmp_path / "c", progress=False)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert losses(tmp_path / "a") != losses(tmp_path / "c")


def test_finished_run_is_not_rerun_unless_forced(tmp_path):
    first = train(tiny(), tmp_path / "run", progress=False)
    mtime = (tmp_path / "run" / "metrics.jsonl").stat().st_mtime_ns
    assert train(tiny(), tmp_path / "run", progress=False)["skipped"]
    assert (tmp_path / "run" / "metrics.jsonl").stat().st_mtime_ns == mtime
    again = train(tiny(), tmp_path / "run", progress=False, force=True)
    assert again["final_train_loss"] == first["final_train_loss"]
    with pytest.raises(ValueError, match="out: .* different config"):
        train(tiny("optim.lr=0.02"), tmp_path / "run", progress=False)


@pytest.mark.slow
def test_killed_run_resumes_to_identical_losses(tmp_path):
    args = ["train", "--preset", "lm-tiny", "run.threads=1", "run.steps=60", "run.checkpoint_every=10"]
    whole_args = [*args, "--out", str(tmp_path / "whole"), "--store", str(tmp_path / "whole.db")]
    subprocess.run(cli(*whole_args), check=True, capture_output=True)
    args += ["--out", str(tmp_path / "killed")]
    proc = subprocess.Popen(cli(*args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    # Kill mid-run: after the checkpoint at step 20 and some steps past it.
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(losses(tmp_path / "killed")) >= 25:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "summary.json").exists(), "the run finished before it was killed"
    killed_at = len(losses(tmp_path / "killed"))
    assert 20 <= killed_at < 60
    subprocess.run(cli(*args), check=True, capture_output=True)
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert losses(tmp_path / "killed") == losses(tmp_path / "whole")  # bit for bit, no duplicated steps
    assert resumed["final_train_loss"] == whole["final_train_loss"]
    assert resumed["val_loss"] == whole["val_loss"]
    runs = store.open(tmp_path / "runs.db").runs()
    assert runs["status"].tolist() == ["done"] and runs["attempts"].tolist() == [2]  # resumed into one row


def test_divergence_is_recorded_not_raised(tmp_path):
    db = store.open(tmp_path / "runs.db")
    summary = train(tiny("optim.lr=1000", "optim.fixed_lr=1000", "schedule.warmup=0"), tmp_path / "run",
                    store=db, progress=False)
    assert summary["status"] == "diverged"
    assert summary["diverged_at"] is not None and summary["diverged_at"] < 12
    row = db.runs().iloc[0]
    assert row["status"] == "diverged" and row["diverged_at"] == summary["diverged_at"]


def test_store_receives_summary_series_and_alignment(tmp_path):
    db = store.open(tmp_path / "runs.db")
    summary = train(tiny(), tmp_path / "run", store=db, sweep="s", tags={"rule": "independent"}, progress=False)
    runs = db.runs()
    assert len(runs) == 1 and runs.loc[0, "status"] == "done" and runs.loc[0, "tag.rule"] == "independent"
    run_id = int(runs.loc[0, "run_id"])
    series = db.series(run_id, names=["train_loss"])
    assert series["value"].tolist() == losses(tmp_path / "run")
    assert runs.loc[0, "final_train_loss"] == pytest.approx(summary["final_train_loss"])
    assert set(db.alignment(run_id)["step"]) == {0, 10}


@pytest.mark.parametrize("name, width", [("mlp-synthetic", 128), ("resnet-digits", 16)])
def test_other_families_train(tmp_path, name, width):
    cfg = resolve(preset=name, overrides=["run.steps=6", "run.threads=1", "run.checkpoint_every=0",
                                          "monitor.every=5", f"model.width={width}"])
    summary = train(cfg, tmp_path / name, progress=False)
    assert summary["status"] == "done" and summary["width_mult"] > 1
    assert len(read_jsonl(tmp_path / name / "alignment.jsonl")) > 0


def test_every_preset_validates():
    assert {"lm-tiny", "lm-shakespeare", "mlp-synthetic", "resnet-digits"} <= set(presets())
    for name in presets():
        resolve(preset=name)


@pytest.mark.parametrize(
    "override, field",
    [
        ("optim.wd_scaling=indep", "optim.wd_scaling"),
        ("optim.lr=-1", "optim.lr"),
        ("run.steps=0", "run.steps"),
        ("model.widht=64", "model.widht"),
        ("schedule.extra_warmup=cosine", "schedule.extra_warmup"),
        ("data.seq_len=512", "data.seq_len"),
        ("model.width=16", "model.width"),
    ],
)
def test_config_errors_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        resolve(preset="lm-tiny", overrides=[override])


def test_cli_dry_run_prints_resolved_config():
    out = subprocess.run(cli("train", "--preset", "lm-tiny", "optim.lr=3e-3", "--dry-run"),
                         capture_output=True, text=True, check=True).stdout
    assert "lr: 0.003" in out and "family: llama" in out


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path):
    args = ["train", "--preset", "lm-tiny", "run.threads=1", "run.steps=8", "run.batch_size=8",
            "run.checkpoint_every=0"]
    subprocess.run(cli(*args, "--out", str(tmp_path / "one" / "run")), check=True, capture_output=True)
    port = _free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", "-m", "lrtransfer.cli", *args, "--out", str(tmp_path / "two" / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, capture_output=True, timeout=300, env=env)
    one, two = losses(tmp_path / "one" / "run"), losses(tmp_path / "two" / "run")
    assert len(two) == 8 and two == pytest.approx(one, rel=1e-5)
    assert store.open(tmp_path / "two" / "runs.db").runs()["status"].tolist() == ["done"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
