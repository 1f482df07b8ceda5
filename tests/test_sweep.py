"""Sweeps: spec errors, the plan table, the phase-1 → phase-2 LR pick, and real tiny sweeps that
resume, survive a SIGKILL, keep diverged runs and report failed ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from lrtransfer.analysis import phase1_edges, phase1_picks
from lrtransfer.cli import app
from lrtransfer.config import preset_dict
from lrtransfer.phases import Phase
from lrtransfer.records import store
from lrtransfer.sweep import SpecError, alignment, load_spec, results, run_sweep
from lrtransfer.sweep.plan import dynamics, figure5_partner, frozen_lrs, phase1, phase2
from lrtransfer.sweep.spec import dump_spec

TINY = {"run.steps": 10, "run.checkpoint_every": 3, "run.eval_every": 0}
SPEC = {"name": "tiny", "base": {"preset": "lm-tiny", "overrides": TINY}, "widths": [1, 2],
        "lrs": [3e-3, 1e-2, 30.0], "rules": ["standard", "independent"], "dynamics": True}
COMPARED = ["phase", "arm", "width_mult", "lr", "fixed_lr", "seed", "config_hash", "status", "final_train_loss",
            "val_loss", "diverged_at"]


def spec(**changes) -> dict:
    return {**SPEC, **changes}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lrtransfer.cli", *args]


# --- spec --------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"widths": [1, 0.5]}, "widths[1]: must be >= 1"),
    ({"widths": [1, 2, 2]}, "widths: 2.0 is listed twice"),
    ({"widths": [1, 1.01]}, "widths[1]: 1.01 × base_width 32 = 32.32 is not an integer"),
    ({"widths": [1, 1.25]}, "widths[1]: 1.25 × base_width 32 = 40 (arm standard): model: width: 40 is not divisible"),
    ({"rules": ["indep"]}, "rules[0]: 'indep' is not one of none|standard|independent"),
    ({"lrs": [1e-3, -1]}, "lrs[1]: must be a finite number > 0"),
    ({"lrs": {"min": 1e-3, "max": 1e-2}}, "lrs: a grid needs exactly the keys min, max, num"),
    ({"seeds": [-1]}, "seeds[0]: must be >= 0"),
    ({"protocol": "three_phase"}, "protocol: 'three_phase' is not one of two_phase|one_phase"),
    ({"base": {"preset": "lm-tiny", "inline": {}}}, "base: give exactly one of preset|config|inline"),
    ({"base": {"preset": "nope"}}, "base: preset: 'nope' is not one of"),
    ({"arms": {"standard": {}}}, "arms: 'standard' is a reserved arm name"),
    ({"arms": {"w": {"optim": {"lr": 1.0}}}}, "arms: w.optim.lr: is set by the sweep plan"),
    ({"arms": {"w": {"schedule.warmpu": 0.5}}}, "arms.w: schedule.warmpu: Extra inputs are not permitted"),
    ({"rules": ["none"], "dynamics": True}, "dynamics: needs 'standard' in rules"),
    ({"rules": [], "arms": {}}, "rules/arms: the sweep has no arm"),
    ({"lrss": [1e-3]}, "lrss: Extra inputs are not permitted"),
])
def test_spec_errors_name_the_field(changes, message):
    with pytest.raises(SpecError) as err:
        load_spec(spec(**changes))
    assert message in str(err.value)


def test_log_spaced_grid_and_relative_config_file(tmp_path):
    assert load_spec(spec(lrs={"min": 2e-3, "max": 6.4e-2, "num": 6})).lrs == [0.002, 0.004, 0.008, 0.016, 0.032, 0.064]
    base = preset_dict("lm-tiny")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**base, "model": {**base["model"], "depth": 1}}))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({**SPEC, "base": {"config": "base.yaml"}}))
    assert load_spec(tmp_path / "spec.yaml").base.raw()["model"]["depth"] == 1


# --- plan --------------------------------------------------------------------------------------

def test_plan_table():
    s = load_spec(spec(widths=[1, 2, 4], rules=["none", "standard", "independent"], seeds=[0, 1],
                       arms={"warm50": {"schedule": {"warmup": 0.5}}}))  # nested: changes only warmup
    p1 = phase1(s)
    assert len(p1) == 4 * 3 * 2 and len({r.config_hash for r in p1}) == 3 * 3 * 2  # standard ≡ independent at 1×
    assert all(r.config.model.width == 32 and r.config.optim.lr == r.config.optim.fixed_lr == r.lr for r in p1)
    warm = {(r.config.schedule.name, r.config.schedule.warmup) for r in p1 if r.arm == "warm50"}
    assert warm == {("warmup_linear_decay", 0.5)}
    fixed = {"none": 0.03, "standard": 0.01, "independent": 0.01, "warm50": 3e-3}
    p2 = phase2(s, fixed)
    assert len(p2) == 4 * 3 * 3 * 2 and len({r.config_hash for r in p2}) == 3 * 3 * 2 + 4 * 2 * 3 * 2
    assert {(r.width_mult, r.config.model.width) for r in p2} == {(1, 32), (2, 64), (4, 128)}
    assert all(r.config.optim.fixed_lr == fixed[r.arm] and r.config.optim.lr == r.lr for r in p2)
    assert {r.config_hash for r in p1 if r.arm == "standard" and r.lr == 0.01} & {r.config_hash for r in p2}
    assert len(phase2(s, {"standard": 0.01})) == 3 * 3 * 2  # an arm without a phase-1 LR is left out
    dyn = dynamics(s, 0.01)
    assert [(r.width_mult, r.seed) for r in dyn] == [(1, 0), (1, 1), (2, 0), (2, 1), (4, 0), (4, 1)]
    wide = dyn[-1].config.optim
    assert (wide.lr_scaling, wide.wd_scaling, wide.lr, wide.fixed_lr) == ("none", "standard", 0.01, 0.01)


def test_one_phase_keeps_the_configured_fixed_lr():
    s = load_spec(spec(protocol="one_phase", base={"preset": "lm-tiny", "overrides": {"optim.fixed_lr": 0.02}}))
    rows = phase2(s, dict.fromkeys(s.arm_overrides()))
    assert {r.config.optim.fixed_lr for r in rows} == {0.02} and {r.phase for r in rows} == {Phase.TWO}


def frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["arm", "lr", "seed", "status", "final_train_loss"]).assign(width_mult=1.0)


@pytest.mark.parametrize("rows, best", [
    ([("a", 1e-3, 0, "done", 3.0), ("a", 1e-3, 1, "done", 3.4), ("a", 2e-3, 0, "done", 3.1),
      ("a", 2e-3, 1, "done", 3.2)], {"a": 2e-3}),  # mean over seeds: 3.2 vs 3.15
    ([("a", 1e-3, 0, "done", 3.3), ("a", 2e-3, 0, "done", 3.0), ("a", 2e-3, 1, "diverged", None)],
     {"a": 1e-3}),  # one diverged seed makes its LR +inf
    ([("a", 2e-3, 0, "done", 3.0), ("a", 1e-3, 0, "done", 3.0)], {"a": 1e-3}),  # a tie goes to the smaller LR
    ([("a", 1e-3, 0, "failed", None), ("a", 2e-3, 0, "pending", None), ("b", 4e-3, 0, "done", 2.0)],
     {"b": 4e-3}),  # an arm with no finished LR is left out
])
def test_phase1_picks(rows, best):
    assert phase1_picks(frame(rows)) == best


def test_figure6_arms_share_the_reference_arms_frozen_lr():
    arms = {"warmup50": {"optim.lr_scaling": "none", "schedule.warmup": 0.5}, "sqrt": {"optim.lr_scaling": "sqrt"}}
    s = load_spec(spec(arms=arms, warmup_arms=["warmup50"]))
    assert {r.arm for r in phase1(s)} == {"standard", "independent", "sqrt"}  # no phase 1 of its own (G.3.5)
    assert frozen_lrs(s, {"standard": 1e-2, "independent": 3e-3, "sqrt": 2e-2}) == {
        "standard": 1e-2, "independent": 3e-3, "sqrt": 2e-2, "warmup50": 3e-3}
    assert "warmup50" not in frozen_lrs(s, {"standard": 1e-2})  # no reference pick: left out of phase 2
    with pytest.raises(SpecError, match="warmup_arms: 'standard' is not one of the spec's arms"):
        load_spec(spec(warmup_arms=["standard"]))


def test_a_phase1_pick_at_the_grid_edge_is_warned_about():
    rows = [(1, "a", lr, 0, "done", loss) for lr, loss in [(1e-3, 2.0), (2e-3, 2.1), (4e-3, 2.2)]]
    rows += [(1, "b", lr, 0, "done", loss) for lr, loss in [(1e-3, 2.2), (2e-3, 2.0), (4e-3, 2.1)]]
    df = pd.DataFrame(rows, columns=["phase", "arm", "lr", "seed", "status", "final_train_loss"]).assign(width_mult=1.0)
    (note,) = phase1_edges(df)
    assert note.startswith("phase 1, arm a: the best LR 0.001 is the lowest of the phase-1 grid") and "down" in note


# --- real sweeps -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "tiny"
    report = run_sweep(spec(), out, workers=2, progress=False)
    return out, report


def test_sweep_folder_and_dedupe(swept):
    out, report = swept
    df = results(out)
    assert report.ok and {"runs", "runs.db", "plan.csv", "sweep.yaml"} <= {p.name for p in out.iterdir()}
    # dynamics: the no-muP run at both widths and the independent partner of Figure 5's pair
    assert df.groupby("phase", sort=False).size().to_dict() == {Phase.ONE: 6, Phase.TWO: 12, Phase.DYNAMICS: 3}
    distinct = set(df["config_hash"])
    stored = set(store.open(out / "runs.db").runs()["config_hash"])
    assert {p.name for p in (out / "runs").iterdir()} == distinct == stored
    at_1x = df[(df["phase"] == Phase.TWO) & (df["width_mult"] == 1)]
    assert (at_1x.groupby("lr")["config_hash"].nunique() == 1).all()  # standard and independent share 1× runs
    assert [h for h in load_plan_hashes(out / "sweep.yaml")] == list(df["config_hash"])


def load_plan_hashes(path: Path) -> list[str]:
    """The resolved spec replans the same runs (phase 2 and dynamics with the sweep's picks)."""
    s, df = load_spec(path), results(path.parent)
    fixed = df[df["phase"] == Phase.TWO].groupby("arm", sort=False)["fixed_lr"].first().to_dict()
    dyn = df[df["phase"] == "dynamics"]
    dyn_lr = dyn.loc[dyn["arm"] == "no_mup", "lr"].iloc[0]
    partner = dyn[dyn["arm"] == "independent"].iloc[0]
    runs = [*phase1(s), *phase2(s, fixed), *dynamics(s, dyn_lr),
            *figure5_partner(s, partner["width_mult"], partner["lr"], fixed["independent"])]
    return [r.config_hash for r in runs]


def test_phase2_carries_the_best_phase1_lr(swept):
    out, _ = swept
    df = results(out)
    p1 = df[df["phase"] == Phase.ONE].assign(loss=lambda d: d["final_train_loss"].fillna(float("inf")))
    best = p1.loc[p1.groupby("arm")["loss"].idxmin()].set_index("arm")["lr"].to_dict()
    p2 = df[df["phase"] == Phase.TWO]
    assert set(p2["fixed_lr"]) == {best["standard"]} and best == {"standard": 1e-2, "independent": 1e-2}
    for folder, arm in zip(p2["folder"], p2["arm"]):
        assert yaml.safe_load((Path(folder) / "config.yaml").read_text())["optim"]["fixed_lr"] == best[arm]
    # G.3.3: the no-muP runs take the standard arm's best LR at the widest width after muP scaling (η/m)
    std_2x = p2[(p2["arm"] == "standard") & (p2["width_mult"] == 2)].sort_values("final_train_loss")
    dyn = df[(df["phase"] == "dynamics") & (df["arm"] == "no_mup")]
    assert set(dyn["lr"]) == set(dyn["fixed_lr"]) == {std_2x["lr"].iloc[0] / 2} and set(dyn["width"]) == {32, 64}
    # G.3.4: Figure 5's independent twin at 2× has the same LR-WD product, with independent's frozen LR
    twin = df[(df["phase"] == "dynamics") & (df["arm"] == "independent")]
    expected = [[2.0, std_2x["lr"].iloc[0] / 2, best["independent"]]]
    assert twin[["width_mult", "lr", "fixed_lr"]].values.tolist() == expected


def test_diverged_runs_are_kept_and_the_sweep_goes_on(swept):
    out, report = swept
    df = results(out)
    assert set(df.loc[df["lr"] == 30.0, "status"]) == {"diverged"}
    assert set(df.loc[df["lr"] != 30.0, "status"]) == {"done"} and report.ok


def test_alignment_rows_carry_the_plan_columns(swept):
    out, _ = swept
    rows = results(out).query("phase == '2' and arm == 'independent' and lr == 0.01")
    align = alignment(out, rows)
    assert list(align.columns[:7]) == ["config_hash", "arm", "phase", "width_mult", "width", "lr", "seed"]
    assert set(align["width"]) == {32, 64} and set(align["role"]) == {"hidden", "output"}
    assert len(alignment(out)) > len(align)


def test_rerun_trains_nothing(swept):
    out, _ = swept
    before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.jsonl")}
    attempts = store.open(out / "runs.db").runs()[["config_hash", "attempts"]]
    again = run_sweep(load_spec(out / "sweep.yaml"), out, workers=2, progress=False)
    assert again.outcomes == [] and again.ok
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.jsonl")} == before
    assert store.open(out / "runs.db").runs()[["config_hash", "attempts"]].equals(attempts)


@pytest.mark.slow
def test_killed_sweep_finishes_on_rerun_like_an_uninterrupted_one(swept, tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec()))
    out = tmp_path / "killed"
    proc = subprocess.Popen(cli("sweep", str(tmp_path / "spec.yaml"), "--out", str(out), "--workers", "2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished = wait_for_finished_runs(out / "runs.db", 3, proc)
    children = child_pids(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert finished < results(swept[0])["config_hash"].nunique() and children, "kill it midway, workers running"
    wait_gone(children)  # workers die with the sweep (no orphan keeps writing)
    assert run_sweep(tmp_path / "spec.yaml", out, workers=2, progress=False).ok
    reference = results(swept[0])[COMPARED]
    pd.testing.assert_frame_equal(results(out)[COMPARED], reference)
    a, b = store.open(out / "runs.db"), store.open(swept[0] / "runs.db")
    for h in reference["config_hash"].unique():
        assert a.series(a.find(h)["run_id"]).equals(b.series(b.find(h)["run_id"]))


@pytest.mark.slow  # a real sweep
def test_failed_run_is_reported_and_the_sweep_goes_on(tmp_path):
    broken = {"monitor.layers": ["nope*"]}  # valid in the spec; the run's preflight (model built) refuses it
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec(
        protocol="one_phase", widths=[1], lrs=[1e-2], rules=["standard"], dynamics=False, arms={"broken": broken})))
    run = CliRunner().invoke(app, ["sweep", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out"),
                                   "--workers", "1"])
    assert run.exit_code == 1 and "FAILED" in run.output and "matches no measurable module" in run.output
    df = results(tmp_path / "out").set_index("arm")
    assert (df.loc["standard", "status"], df.loc["broken", "status"]) == ("done", "failed")
    runs = store.open(tmp_path / "out" / "runs.db").runs().set_index("status")
    assert "matches no measurable module" in runs.loc["failed", "error"]


def wait_for_finished_runs(db_path: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if db_path.exists():
            count = int(store.open(db_path).runs()["status"].isin(store.FINISHED).sum())
            if count >= n:
                return count
        time.sleep(0.05)
    raise AssertionError(f"the sweep did not finish {n} runs in {timeout} s (exit {proc.poll()})")


def child_pids(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def wait_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{p}").exists() and "Z" not in proc_state(p) for p in pids):
        assert time.monotonic() < deadline, f"worker processes {pids} outlived the killed sweep"
        time.sleep(0.05)


def proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def test_resolved_spec_is_a_fixed_point():
    s = load_spec(spec(lrs={"min": 1e-3, "max": 1e-2, "num": 3}))
    resolved = load_spec(yaml.safe_load(dump_spec(s)))
    assert dump_spec(resolved) == dump_spec(s) and resolved.base.inline["optim"]["lr"] == 0.01
    assert [r.config_hash for r in phase1(resolved)] == [r.config_hash for r in phase1(s)]


def test_a_second_driver_on_one_folder_is_refused_and_a_killed_ones_lock_is_not_stale(tmp_path):
    from lrtransfer.sweep.lock import SweepLocked, folder_lock

    out = tmp_path / "sweep"
    out.mkdir()
    with folder_lock(out), pytest.raises(SweepLocked, match=rf"out: {out} is in use by another sweep driver \(pid"):
        run_sweep(spec(), out, workers=1, progress=False)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from lrtransfer.sweep.lock import folder_lock\n"
                               f"with folder_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(SweepLocked, match=f"pid {holder.pid}"):
        with folder_lock(out):
            pass
    holder.kill()
    holder.wait()
    with folder_lock(out):  # the kernel dropped the dead driver's lock: nothing to clean up
        assert (out / "sweep.lock").read_text().startswith(f"pid {os.getpid()}")
