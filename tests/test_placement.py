"""GPU placement of sweep runs, on a machine without a GPU: the slots as a table, the claim of a slot
by real locks, and real sweeps whose trials report the CUDA_VISIBLE_DEVICES they were given."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from lrtransfer.config import ConfigError
from lrtransfer.records.record import read_summary
from lrtransfer.sweep import results, run_sweep
from lrtransfer.sweep.local import LocalExecutor
from lrtransfer.sweep.placement import (
    Placement,
    check_cluster,
    gpu_slots,
    ray_options,
    visible_gpus,
)


@pytest.mark.parametrize("gpus, runs_per_gpu, gpus_per_run, slots", [
    (["0", "1"], 1, 1, [("0",), ("1",)]),
    (["0", "1"], 2, 1, [("0",), ("1",), ("0",), ("1",)]),  # round-robin: 2 workers use both GPUs
    (["0", "1", "2", "3", "4"], 1, 2, [("0", "1"), ("2", "3")]),  # the odd GPU stays unused
    (["3", "GPU-ab12"], 1, 1, [("3",), ("GPU-ab12",)]),  # ids as CUDA_VISIBLE_DEVICES names them
    ([], 1, 1, []),  # no GPU: the CPU path
])
def test_gpu_slots(gpus, runs_per_gpu, gpus_per_run, slots):
    assert gpu_slots(gpus, runs_per_gpu, gpus_per_run) == slots


@pytest.mark.parametrize("environ, count, gpus", [
    ({}, 3, ["0", "1", "2"]),
    ({"CUDA_VISIBLE_DEVICES": "2,5"}, 8, ["2", "5"]),  # the sweep's own restriction is kept
    ({"CUDA_VISIBLE_DEVICES": "1,-1,3"}, 8, ["1"]),  # CUDA stops at an invalid id
    ({"CUDA_VISIBLE_DEVICES": ""}, 8, []),
    ({}, 0, []),
])
def test_visible_gpus(environ, count, gpus):
    assert visible_gpus(environ, lambda: count) == gpus


@pytest.mark.parametrize("placement, slots", [
    ({}, [("0",), ("1",)]),
    ({"gpus": "auto", "runs_per_gpu": 3}, [("0",), ("1",)] * 3),
    ({"gpus": "none"}, []),
    ({"gpus": "1"}, [("1",)]),
    ({"gpus": [0, 1], "gpus_per_run": 2}, [("0", "1")]),
    ({"gpus": "0, 1", "gpus_per_run": 1.0}, [("0",), ("1",)]),
])
def test_placement_resolves_to_slots(placement, slots):
    assert Placement(**placement).local_slots({}, lambda: 2) == slots


@pytest.mark.parametrize("placement, message", [
    ({"gpus": "0,,1"}, "gpus"),
    ({"gpus": "0,0"}, "gpus"),
    ({"runs_per_gpu": 0}, "runs_per_gpu"),
    ({"gpus_per_run": 1.5}, "gpus_per_run: more than one GPU must be a whole number"),
    ({"gpus_per_run": 0}, "gpus_per_run"),
    ({"runs_per_gpu": 2, "gpus_per_run": 2}, "runs_per_gpu: packs runs on one GPU"),
])
def test_invalid_placement_names_the_field(placement, message):
    with pytest.raises(ConfigError, match=message):
        run_sweep({"base": {"preset": "lm-tiny"}, "lrs": [1e-3]}, "unused", placement=placement)


@pytest.mark.parametrize("placement, message", [
    ({"gpus": "0", "gpus_per_run": 2}, "gpus_per_run: 2 GPUs per run, but only 1 GPUs"),
    ({"gpus_per_run": 0.5}, "gpus_per_run: the local executor gives a run whole GPUs"),
    ({"runs_per_gpu": 2}, "gpus: auto finds no GPU on this machine"),
])
def test_local_placement_errors(placement, message):
    with pytest.raises(ConfigError, match=message):
        Placement(**placement).local_slots({}, lambda: 0)


def test_workers_beyond_the_slots_are_refused():
    with pytest.raises(ConfigError, match="workers: 3 parallel runs, but the GPUs give 2 slots"):
        LocalExecutor(workers=3, placement=Placement(gpus="0,1"))
    assert LocalExecutor(placement=Placement(gpus="0,1", runs_per_gpu=2)).workers == 4  # one per slot
    assert LocalExecutor(workers=1, placement=Placement(gpus="0,1")).workers == 1


def test_ray_resources_and_checks():
    assert ray_options(2, None) == {"num_cpus": 2}
    assert ray_options(1, 0.25) == {"num_cpus": 1, "num_gpus": 0.25}
    check_cluster({"CPU": 8, "GPU": 1}, 0.25)
    check_cluster({"CPU": 8}, None)
    with pytest.raises(ConfigError, match="gpus_per_run: 0.5 GPUs per run, but the Ray cluster has 0 GPUs"):
        check_cluster({"CPU": 8}, 0.5)
    with pytest.raises(ConfigError, match="runs_per_gpu: only for the local executor"):
        Placement(runs_per_gpu=2).check_ray()
    Placement(gpus_per_run=0.5).check_ray()


SPEC = {"name": "placed", "base": {"objective": "objectives:device_report", "base_width": 16},
        "widths": [1, 2], "lrs": [1e-3, 2e-3, 4e-3], "rules": ["independent"], "protocol": "one_phase"}


@pytest.mark.slow
def test_a_local_sweep_packs_its_trials_on_the_gpus(tmp_path, monkeypatch):
    monkeypatch.chdir(os.path.dirname(__file__))  # objectives.py, importable by the workers
    report = run_sweep(SPEC, tmp_path, progress=False, placement={"gpus": "0,1", "runs_per_gpu": 2})
    assert report.ok and len(report.outcomes) == 6
    trials = summaries(tmp_path)
    placed = {s["pid"]: s["cuda_visible_devices"] for s in trials}
    assert len(trials) == 6 and set(placed.values()) <= {"0", "1"}
    assert all(placed[s["pid"]] == s["cuda_visible_devices"] for s in trials)  # a worker keeps its slot
    assert max(Counter(placed.values()).values()) <= 2  # at most 4 workers, never more than 2 on a GPU


@pytest.mark.slow
def test_ray_packs_trials_by_fractional_gpus(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.chdir(os.path.dirname(__file__))
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False)  # 2 logical GPUs: Ray assigns them all the same
    try:
        report = run_sweep({**SPEC, "widths": [1]}, tmp_path, executor="ray", progress=False,
                           placement={"gpus_per_run": 0.5})
    finally:
        ray.shutdown()
    assert report.ok
    assert {s["cuda_visible_devices"] for s in summaries(tmp_path)} <= {"0", "1"}


def summaries(out) -> list[dict]:
    df = results(out)
    assert set(df["status"]) == {"done"}
    return [read_summary(folder) for folder in df.drop_duplicates("config_hash")["folder"]]


def test_cli_names_the_placement_field_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "lrtransfer.cli", "sweep", "demo", "--out", str(tmp_path / "out"),
                          "--gpus", "0", "--workers", "2"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and not (tmp_path / "out").exists()
    assert run.stderr == "error: workers: 2 parallel runs, but the GPUs give 1 slots (raise runs_per_gpu, or give " \
                         "gpus=none to train on CPU)\n"
