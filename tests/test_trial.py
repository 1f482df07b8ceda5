"""Studies of the user's own model and loop: the Trial contract, recording, resume, the Study API and
the CLI (`base.objective`), on a model no built-in family knows (tests/objectives.py)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lrtransfer
from lrtransfer.config import validate
from lrtransfer.objectives.trial import run_trial
from lrtransfer.records import jsonl, store
from lrtransfer.sweep import SpecError, load_spec, results

HERE = Path(__file__).parent


def config(objective: str = "objectives:objective", width: int = 32, **extra):
    raw = {"objective": objective, "model": {"width": width, "base_width": 16},
           "optim": {"lr": 4e-3, "fixed_lr": 1e-2, "weight_decay": 0.1, "wd_scaling": "standard"},
           "monitor": {"every": 10}, "run": {"seed": 3, "final_window": 5}, **extra}
    return validate(raw)


def test_trial_contract_and_seeding(tmp_path):
    summary = run_trial(config("objectives:contract", params={"k": 1}), tmp_path / "a", phase=2, arm="x").summary
    assert summary["status"] == "done"
    assert (summary["width"], summary["base_width"], summary["width_mult"]) == (32, 16, 2.0)
    assert (summary["lr"], summary["fixed_lr"], summary["weight_decay"]) == (4e-3, 1e-2, 0.1)
    assert (summary["lr_scaling"], summary["wd_scaling"], summary["seed"]) == ("mup", "standard", 3)
    assert (summary["phase"], summary["arm"], summary["params"], summary["folder_is_dir"]) == (2, "x", {"k": 1}, True)
    again = run_trial(config("objectives:contract", params={"k": 1}), tmp_path / "b").summary
    assert again["draws"] == summary["draws"]  # torch, numpy and random seeded from trial.seed
    other = run_trial(config("objectives:contract", params={"k": 1}, run={"seed": 4}), tmp_path / "c").summary
    assert all(a != b for a, b in zip(other["draws"], summary["draws"]))


def test_param_groups_apply_the_trials_rule(tmp_path):
    from objectives import ResidualMLP

    cfg = config()
    trial = lrtransfer.Trial(cfg, tmp_path)
    groups = {g["role"]: g for g in trial.param_groups(ResidualMLP(32), ResidualMLP(16))}
    assert groups["hidden"]["lr"] == pytest.approx(4e-3 / 2) and groups["hidden"]["weight_decay"] == 0.1
    assert groups["output"]["lr"] == pytest.approx(4e-3 / 2)
    assert groups["input"]["lr"] == 1e-2 and groups["gain"]["weight_decay"] == 0  # the projection keeps fixed_lr
    trial.close()


def test_a_trial_is_recorded_like_a_built_in_run(tmp_path):
    db = store.open(tmp_path / "runs.db")
    cfg = config(params={"steps": 30})
    records = run_trial(cfg, tmp_path / "run", store=db)
    s = records.summary
    losses = [r["train_loss"] for r in jsonl.read(tmp_path / "run" / "metrics.jsonl")]
    assert s["status"] == "done" and s["steps"] == 30 and len(losses) == 30
    assert s["final_train_loss"] == pytest.approx(sum(losses[-5:]) / 5) and math.isfinite(s["val_loss"])
    row = db.find(cfg.hash())
    assert row["status"] == "done" and row["summary"]["final_train_loss"] == s["final_train_loss"]
    assert db.series(row["run_id"], "train_loss")["value"].tolist() == losses
    align = db.alignment(row["run_id"])
    assert sorted(set(align["step"])) == [0, 10, 20] and {"hidden", "output"} <= set(align["role"])
    assert run_trial(cfg, tmp_path / "run", store=db).summary.get("skipped")  # finished: not re-run


def test_diverged_and_failed_trials_are_recorded(tmp_path):
    db = store.open(tmp_path / "runs.db")
    div = run_trial(config("objectives:diverges"), tmp_path / "d", store=db).summary
    assert div["status"] == "diverged" and div["diverged_at"] == 3 and math.isnan(div["final_train_loss"])
    failed = run_trial(config("objectives:fails"), tmp_path / "f", store=db).summary
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: out of memory at this width (simulated)"
    assert db.find(config("objectives:fails").hash())["status"] == "failed"


def test_a_killed_trial_resumes_from_its_own_checkpoint(tmp_path):
    clean = run_trial(config(params={"steps": 30, "save_at": 12}), tmp_path / "clean").summary
    cfg = config(params={"steps": 30, "save_at": 12, "crash": True})
    db = store.open(tmp_path / "runs.db")
    with pytest.raises(KeyboardInterrupt):
        run_trial(cfg, tmp_path / "run", store=db)
    assert db.find(cfg.hash())["status"] == "running"
    resumed = run_trial(cfg, tmp_path / "run", store=db).summary
    losses = [r["train_loss"] for r in jsonl.read(tmp_path / "run" / "metrics.jsonl")]
    clean_losses = [r["train_loss"] for r in jsonl.read(tmp_path / "clean" / "metrics.jsonl")]
    assert losses == clean_losses and resumed["final_train_loss"] == clean["final_train_loss"]
    steps = [r["step"] for r in jsonl.read(tmp_path / "run" / "alignment.jsonl")]
    assert steps == [0] * 4 + [10] * 4 + [20] * 4  # 4 layers; step 10's records kept, none twice


@pytest.mark.parametrize("objective, message", [
    ("nowhere.module:fn", "base.objective: cannot import 'nowhere.module:fn' (ModuleNotFoundError"),
    ("objectives:missing", "base.objective: cannot import 'objectives:missing' (AttributeError"),
    ("objectives:not_a_function", "base.objective: 'objectives:not_a_function' is not a callable of one argument"),
    ("objectives:two_arguments", "base.objective: 'objectives:two_arguments' is not a callable of one argument"),
    ("no_colon", "base.objective: cannot import 'no_colon'"),
])
def test_objective_errors_name_the_field(objective, message):
    with pytest.raises(SpecError) as err:
        load_spec({"base": {"objective": objective, "base_width": 16}, "lrs": [1e-3]})
    assert message in str(err.value)


def test_spec_fields_that_need_an_objective():
    with pytest.raises(SpecError, match="base_width: give it with objective"):
        load_spec({"base": {"objective": "objectives:objective"}, "lrs": [1e-3]})
    with pytest.raises(SpecError, match="params: only used with objective"):
        load_spec({"base": {"preset": "lm-tiny", "params": {"a": 1}}, "lrs": [1e-3]})


@pytest.mark.slow
def test_study_of_a_custom_model_runs_resumes_and_reports(tmp_path):
    study = lrtransfer.Study(objectives_module().objective, base_width=16, params={"steps": 30},
                             widths=[1, 2], lrs=[2e-3, 8e-3, 3.2e-2], rules=["standard", "independent"],
                             phase1_lrs=[4e-3, 1.6e-2], overrides={"optim.weight_decay": 0.1, "run.final_window": 5},
                             dynamics=True)
    result = study.run(tmp_path / "study", workers=2, progress=False)
    assert result.sweep.ok and result.report.is_file() and len(result.verdicts) == 2
    df = results(tmp_path / "study")
    assert set(df["status"]) == {"done"} and set(df["phase"].astype(str)) == {"1", "2", "dynamics"}
    trained = sum(o.status == "done" for o in result.sweep.outcomes)
    again = study.run(tmp_path / "study", workers=2, progress=False)
    assert trained > 0 and again.sweep.outcomes == []  # a re-run trains nothing finished
    figures = {p.stem for p in (tmp_path / "study" / "figures").glob("*.png")}
    assert {"figure1_transfer", "figure3_rrc", "figure4_alignment"} <= figures


@pytest.mark.slow
def test_cli_sweeps_an_objective_beside_its_spec(tmp_path):
    (tmp_path / "my_objective.py").write_text((HERE / "objectives.py").read_text())
    (tmp_path / "spec.yaml").write_text(textwrap.dedent("""\
        name: mine
        base: {objective: "my_objective:objective", base_width: 16, params: {steps: 20},
               overrides: {run.final_window: 5}}
        widths: [1, 2]
        lrs: [4.0e-3, 1.6e-2]
        rules: [independent]
        protocol: one_phase
    """))
    run = subprocess.run([sys.executable, "-m", "lrtransfer.cli", "sweep", "spec.yaml", "--out", "out",
                          "--workers", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert set(results(tmp_path / "out")["status"]) == {"done"}
    report = subprocess.run([sys.executable, "-m", "lrtransfer.cli", "report", "out"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0 and (tmp_path / "out" / "report.html").is_file(), report.stderr[-2000:]


def objectives_module():
    import objectives

    return objectives
