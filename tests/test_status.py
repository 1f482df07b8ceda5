"""`lrtransfer status DIR`: a sweep folder's runs per stage and status, elapsed time and phase-1 LRs,
read while the sweep runs in another process and after it finished."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lrtransfer.analysis import phase1_picks
from lrtransfer.phases import Phase
from lrtransfer.records import store
from lrtransfer.sweep import load_spec, results
from lrtransfer.sweep.plan import phase1, phase2, write_plan
from lrtransfer.sweep.spec import dump_spec
from lrtransfer.sweep.status import COUNTED, sweep_status

SPEC = {"name": "tiny", "base": {"preset": "lm-tiny", "overrides": {"run.steps": 10, "run.eval_every": 0}},
        "widths": [1, 2], "lrs": [3e-3, 1e-2, 3e-2], "rules": ["standard", "independent"], "dynamics": True}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lrtransfer.cli", *args]


def finish(db: store.RunStore, run, status: str, loss: float | None = None) -> None:
    run_id = db.start_run(run.config.to_dict(), sweep="tiny")
    if status != "running":
        db.finish(run_id, status, {"status": status, "final_train_loss": loss if loss is not None else float("nan"),
                                   "wall_s": 1.0, "steps": 10, "width": run.config.model.width})


def test_status_counts_each_stage_of_a_hand_made_folder(tmp_path):
    spec = load_spec(SPEC)
    (tmp_path / "sweep.yaml").write_text(dump_spec(spec))
    p1 = phase1(spec)
    write_plan(tmp_path, p1)
    db = store.open(tmp_path / "runs.db")
    distinct = list({r.config_hash: r for r in p1}.values())  # standard ≡ independent at 1×: 3 runs
    finish(db, distinct[0], "done", 3.0)
    finish(db, distinct[1], "running")
    folder = tmp_path / distinct[1].folder
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(distinct[1].config.to_dict()))
    (folder / "metrics.jsonl").write_text("".join(f'{{"step": {s}, "train_loss": 3.0}}\n' for s in range(4)))
    st = sweep_status(tmp_path, now=time.time() + 5)
    row = st.stages.set_index("stage").loc["phase 1"]
    assert (row["runs"], *(row[c] for c in COUNTED)) == (3, 1, 0, 0, 1, 1)
    assert st.unplanned == ["phase 2", "dynamics"] and st.best == {} and st.distinct == 3
    assert re.fullmatch(r"phase 1 \w+ 1x lr=0.01 seed 0: step 4/10, last logged \d+s ago", st.running[0])
    assert 4.5 < row["elapsed_s"] < 60  # the first start → now: a run is still in flight

    finish(db, distinct[1], "done", 2.0)
    finish(db, distinct[2], "diverged")
    write_plan(tmp_path, p1 + phase2(spec, {"standard": 1e-2, "independent": 1e-2}))
    st = sweep_status(tmp_path)
    by_stage = st.stages.set_index("stage")
    assert st.best == {"standard": 1e-2, "independent": 1e-2} == phase1_picks(results(tmp_path).query("phase == '1'"))
    # phase 2 shares its 1× lr=0.01 run with phase 1 (done); 2 more 1× and 6 2× runs are pending
    assert by_stage.loc["phase 2", ["runs", "done", "pending"]].tolist() == [9, 1, 8]
    assert st.unplanned == ["dynamics"] and st.running == []
    text = st.text()
    assert "sweep tiny, 11 distinct runs planned so far" in text and "best phase-1 LR: " in text
    assert "standard 0.01" in text.splitlines()[-1]
    assert "dynamics: not planned yet" in text


def test_status_of_a_folder_without_a_sweep_says_so(tmp_path):
    wide = {**os.environ, "COLUMNS": "400"}  # typer's error box would wrap the message at 80
    proc = subprocess.run(cli("status", str(tmp_path)), capture_output=True, text=True, check=False, env=wide)
    assert proc.returncode != 0 and "holds no sweep (no plan.csv)" in proc.stderr
    with pytest.raises(FileNotFoundError, match="holds no sweep"):
        sweep_status(tmp_path)


@pytest.mark.slow
def test_status_while_a_sweep_runs_in_another_process_and_after(tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({**SPEC, "base": {"preset": "lm-tiny", "overrides": {
        "run.steps": 60, "run.eval_every": 0, "run.checkpoint_every": 0}}}))
    out = tmp_path / "out"
    with open(tmp_path / "sweep.log", "w") as log:
        proc = subprocess.Popen(cli("sweep", str(tmp_path / "spec.yaml"), "--out", str(out), "--workers", "1"),
                                stdout=log, stderr=log)
        during = wait_for_status(out, proc, lambda s: s.stages[["done", "diverged"]].to_numpy().sum() >= 1
                                 and bool(s.running))
        shown = subprocess.run(cli("status", str(out)), capture_output=True, text=True, check=False)
        assert proc.poll() is None, "the sweep should still be running while status reads it"
        assert proc.wait(timeout=300) == 0, (tmp_path / "sweep.log").read_text()[-2000:]
    assert shown.returncode == 0 and "distinct runs planned so far" in shown.stdout
    for row in during.stages.to_dict("records"):
        assert sum(row[c] for c in COUNTED) == row["runs"] and row["failed"] == 0
    assert re.search(r": step \d+/60, last logged \d+s ago", during.running[0])
    assert during.unplanned or during.stages[["running", "pending"]].to_numpy().sum() > 0  # not finished yet

    after = sweep_status(out)
    df = results(out)
    assert after.stages["stage"].tolist() == ["phase 1", "phase 2", "dynamics"] and after.unplanned == []
    assert (after.stages["done"] + after.stages["diverged"] == after.stages["runs"]).all()
    assert after.stages[["failed", "running", "pending"]].to_numpy().sum() == 0 and after.running == []
    assert after.best == phase1_picks(df[df["phase"] == Phase.ONE]) and after.distinct == df["config_hash"].nunique()
    assert (after.stages["elapsed_s"] > 0).all()


def wait_for_status(out: Path, proc: subprocess.Popen, ready, timeout: float = 120):
    """Poll `sweep_status(out)` until `ready(status)` while `proc` runs; that status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "plan.csv").is_file():
            status = sweep_status(out)
            if ready(status):
                return status
        time.sleep(0.05)
    raise AssertionError(f"no such status within {timeout} s (sweep exit {proc.poll()})")
