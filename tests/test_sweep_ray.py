"""The Ray executor against a real local Ray instance: the same store as the local executor."""

from __future__ import annotations

import time

import pytest

from lrtransfer.records import store
from lrtransfer.sweep import results, run_sweep

ray = pytest.importorskip("ray")

TINY = {"run.steps": 8, "run.checkpoint_every": 0, "run.eval_every": 4}
SPEC = {"name": "tiny", "base": {"preset": "lm-tiny", "overrides": TINY}, "widths": [1, 2], "lrs": [3e-3, 1e-2],
        "rules": ["standard", "independent"],
        # valid in the spec; every run's preflight (the model built) refuses it, on either executor
        "arms": {"broken": {"monitor.layers": ["nope*"]}}}
RUN_COLUMNS = ["config_hash", "status", "final_train_loss", "val_loss", "diverged_at", "steps", "attempts"]
FILES = ("config.yaml", "metrics.jsonl", "alignment.jsonl")


@pytest.fixture(scope="module")
def ray_instance():
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False)
    print(f"ray.init: {time.perf_counter() - start:.1f} s")
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_and_local_sweeps_leave_identical_stores(tmp_path, ray_instance):
    local = run_sweep(SPEC, tmp_path / "local", workers=2, progress=False)
    remote = run_sweep(SPEC, tmp_path / "ray", executor="ray", workers=2, progress=False)
    assert local.notes == remote.notes == ["arm broken: not planned in phase 2 (no finished phase-1 run)"]
    assert set(local.failures) == set(remote.failures) and len(local.failures) == 2
    a, b = store.open(tmp_path / "local" / "runs.db"), store.open(tmp_path / "ray" / "runs.db")
    runs_a, runs_b = (db.runs().sort_values("config_hash", ignore_index=True) for db in (a, b))
    assert runs_a[RUN_COLUMNS].equals(runs_b[RUN_COLUMNS])  # bit for bit, NaN where diverged/failed
    assert list(runs_b["error"].dropna().str.contains("matches no measurable module")) == [True, True]
    for h, status in zip(runs_a["config_hash"], runs_a["status"]):
        if status != "failed":
            assert a.series(a.find(h)["run_id"]).equals(b.series(b.find(h)["run_id"]))
            assert a.alignment(a.find(h)["run_id"]).equals(b.alignment(b.find(h)["run_id"]))
            for name in FILES:
                local_file, ray_file = (tmp_path / side / "runs" / h / name for side in ("local", "ray"))
                assert local_file.read_text() == ray_file.read_text()
    assert results(tmp_path / "local").drop(columns=["wall_s", "folder"]).equals(
        results(tmp_path / "ray").drop(columns=["wall_s", "folder"]))


def test_ray_rerun_trains_nothing(tmp_path, ray_instance):
    spec = {**SPEC, "arms": {}, "widths": [1], "lrs": [1e-2], "protocol": "one_phase"}
    first = run_sweep(spec, tmp_path, executor="ray", workers=2, progress=False)
    again = run_sweep(spec, tmp_path, executor="ray", workers=2, progress=False)
    assert first.ok and [o.status for o in first.outcomes] == ["done"] and again.outcomes == []
