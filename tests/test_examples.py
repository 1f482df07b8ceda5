"""The examples in examples/ run as a user runs them (a subprocess each, at tiny settings), and print
or write what they promise: verdict lines and a report, the table of parameter groups, alignment numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lrtransfer import sweep

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
# one verdict line per arm (analysis.verdict_table's text), whichever verdict the tiny study reaches
VERDICT = re.compile(r"^(standard|independent): .* — (transfers|does not transfer|inconclusive|edge of grid|"
                     r"no stable run|one width)", re.M)


def run(*args: str, cwd: Path, timeout: int = 120) -> str:
    """Run ``python *args`` with this checkout's package first on the path; its stdout (fails on exit != 0)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_custom_model_study_prints_verdicts_and_writes_the_report(tmp_path):
    out = run(str(EXAMPLES / "custom_model_study.py"), "--tiny", "--workers", "1", "--out", "study", cwd=tmp_path)
    assert sorted(m[1] for m in VERDICT.finditer(out)) == ["independent", "standard"]
    report = re.search(r"^report: (\S+)", out, re.M)
    assert report and (tmp_path / report[1]).resolve() == (tmp_path / "study" / "report.html").resolve()
    assert (tmp_path / report[1]).is_file()
    df = sweep.results(tmp_path / "study")
    assert set(df["status"]) == {"done"} and set(df["width"]) == {32, 64}
    assert (df["final_train_loss"] < 2.3).all()  # below ln 10, chance level of the 10 classes: it learned


@pytest.mark.slow
def test_hf_llama_study_yaml_sweeps_with_the_cli_and_reports(tmp_path):
    spec = yaml.safe_load((EXAMPLES / "hf_llama_study.yaml").read_text())
    # The example's model, for a few steps on a small file (the stdlib corpus takes seconds to read).
    spec["base"]["params"].update(corpus="files", paths=[str(ROOT / "README.md")], seq_len=16, batch_size=4)
    spec["base"]["overrides"].update({"run.steps": 10, "run.final_window": 3, "monitor.every": 5})
    spec.update(widths=[1, 2], lrs=[4e-3, 1.6e-2], protocol="one_phase")
    spec.pop("phase1_lrs")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec))
    out = run("-m", "lrtransfer.cli", "sweep", "tiny.yaml", "--out", "out", "--workers", "1", cwd=tmp_path)
    assert "planned rows" in out
    df = sweep.results(tmp_path / "out")
    assert set(df["status"]) == {"done"} and len(df) == 8 and df["config_hash"].nunique() == 6  # 1× runs shared
    run("-m", "lrtransfer.cli", "report", "out", cwd=tmp_path)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "LR transfer study: hf-llama" in html
    assert "standard: " in html and "independent: " in html and "octaves per width doubling" in html
    align = sweep.alignment(tmp_path / "out")
    assert set(align["width"]) == {32, 64} and len(set(align["layer"])) == 2 * 7 + 1  # every Linear of the llama
    assert {"figure1_transfer", "figure3_rrc"} <= {p.stem for p in (tmp_path / "out" / "figures").glob("*.png")}


@pytest.mark.slow
def test_nanogpt_style_loop_prints_its_groups_losses_and_alignment():
    out = run(str(EXAMPLES / "nanogpt_style_loop.py"), "--tiny", "--steps", "12", cwd=ROOT, timeout=60)
    groups = re.findall(r"^\s*(\S+)\s+(input|hidden|output|gain|bias)\s+\(.*?\)\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    rows = pd.DataFrame(groups, columns=["name", "role", "m", "lr", "weight_decay"]).set_index("name")
    rows[["m", "lr", "weight_decay"]] = rows[["m", "lr", "weight_decay"]].astype(float)
    assert out.lstrip().startswith("name") and (rows["m"] == 2).all()  # the table comes first
    assert rows.loc["wte.weight", "role"] == "input" and "lm_head.weight" not in rows.index  # tied: one tensor
    hidden = rows[rows["role"] == "hidden"]
    assert len(hidden) == 8 and (hidden["lr"] == 1.6e-2 / 2).all() and (hidden["weight_decay"] == 0.5 * 2).all()
    losses = [float(v) for v in re.findall(r"^step \d+: train loss (\d+\.\d+)", out, re.M)]
    assert len(losses) == 7 and losses[-1] < losses[0]  # steps 0, 2, ..., 10 and the last, 11
    first, last = re.search(r"hidden alignment_ratio: (\S+) at step 0, (\S+) at step 9", out).groups()
    assert float(first) > 0 and float(last) > 0


@pytest.mark.slow
def test_torchrun_fsdp_study_runs_the_script_as_a_command_objective(tmp_path):
    spec = yaml.safe_load((EXAMPLES / "torchrun_fsdp_study.yaml").read_text())
    spec.update(lrs=[1.6e-2, 6.4e-2], rules=["independent"])  # 4 trials of the example's size
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "torchrun_train.py").write_text((EXAMPLES / "torchrun_train.py").read_text())  # beside the spec
    out = run("-m", "lrtransfer.cli", "sweep", "spec.yaml", "--out", "out", "--workers", "1", cwd=tmp_path, timeout=300)
    assert "4 distinct runs; this call trained 4 done" in out
    df = sweep.results(tmp_path / "out")
    assert set(df["status"]) == {"done"} and (df["final_train_loss"] < 4.0).all()  # ln 256 = 5.5: it learned
    for folder in df["folder"]:
        metrics = pd.read_json(Path(folder) / "metrics.jsonl", lines=True)
        assert metrics["step"].tolist() == list(range(60))  # every step the script reported, recorded
        assert "step 59: loss" in (Path(folder) / "command.out").read_text()  # rank 0's own output
    assert "independent: " in run("-m", "lrtransfer.cli", "report", "out", cwd=tmp_path)
