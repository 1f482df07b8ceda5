"""The study end to end on a tiny sweep: sweep → analysis → figures → report; built-in studies validate."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lrtransfer.config import resolve
from lrtransfer.study import run_study, study_names, study_spec, timescales
from lrtransfer.sweep import load_spec

TINY = {
    "name": "tiny",
    "base": {"preset": "lm-tiny", "overrides": {"run.steps": 12, "run.checkpoint_every": 0, "monitor.every": 4}},
    "widths": [1, 2],
    "lrs": [4e-3, 1.6e-2, 6.4e-2],
    "rules": ["none", "standard", "independent"],
    "dynamics": True,
}


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


@pytest.mark.slow
def test_tiny_study_writes_a_complete_report(tmp_path, monkeypatch):
    import lrtransfer.study.run as study_run

    partial = []  # the early look: a report after every stage, marked partial, read as the sweep runs
    def spy(out, stage):
        write_partial(out, stage)
        partial.append((stage, (Path(out) / "report.html").read_text()))

    write_partial = study_run._partial
    monkeypatch.setattr(study_run, "_partial", spy)
    result = run_study(TINY, tmp_path / "study", workers=2, progress=False)
    assert result.sweep.ok
    # written in the background while the next stage trains; one not begun when the sweep ends is dropped
    stages = [stage for stage, _ in partial]
    assert stages[0] == "phase 1" and stages == ["phase 1", "phase 2", "dynamics"][: len(stages)]
    assert all("[partial]" in html and f"PARTIAL REPORT, written after {stage}" in html for stage, html in partial)
    assert "figure1_transfer" not in partial[0][1]
    html = result.report.read_text()
    assert "[partial]" not in html and "PARTIAL" not in html  # the final report replaces the partial ones
    parser = _Images()
    parser.feed(html)
    names = {Path(src).stem for src in parser.srcs}
    # Figure 6 needs warmup arms, which this sweep does not have.
    assert {"figure1_transfer", "figure3_rrc", "figure4_alignment", "figure5_warmup_effect",
            "figure16_layer_alignment", "figure7_extra_warmup", "figure15_update_alignment"} <= names
    assert all((result.report.parent / src).is_file() for src in parser.srcs)
    verdict = re.compile(r"^(none|standard|independent): .* — (transfers|does not transfer|inconclusive|edge of grid)")
    assert len(result.verdicts) == 3 and all(verdict.match(v) for v in result.verdicts), result.verdicts
    assert "timescales" in html and "independent at 2×" in html


def test_timescales_count_the_hidden_layers_eta_lambda():
    # Constant schedule: 2·η·λ·T with the hidden layers' own η and λ (Eq 33-36).
    base = ["schedule.name=constant", "run.steps=500", "optim.lr=0.01", "optim.weight_decay=0.5",
            "model.width=64"]
    standard = resolve(preset="lm-tiny", overrides=[*base, "optim.wd_scaling=standard"])
    independent = resolve(preset="lm-tiny", overrides=[*base, "optim.wd_scaling=independent"])
    assert timescales(standard) == pytest.approx(2 * (0.01 / 2) * 0.5 * 500)
    assert timescales(independent) == pytest.approx(2 * 0.01 * 0.5 * 500)


@pytest.mark.parametrize("name", ["demo", "study-mlp", "study-resnet"])
def test_builtin_studies_validate(name):
    assert name in study_names()
    spec = load_spec(study_spec(name))
    # Figure 1's two rules, and enough LRs for the fit's 5-point window (analysis.fit)
    assert spec.protocol == "two_phase" and len(spec.lrs) >= 5 and {"standard", "independent"} <= set(spec.rules)


def test_demo_is_the_paper_setting_at_cpu_scale():
    spec = load_spec(study_spec("demo"))
    assert spec.widths == [1, 2, 4] and spec.dynamics
    raw = spec.base.raw()
    assert raw["data"]["corpus"] == "shakespeare" and raw["model"]["family"] == "llama"


def test_cli_rejects_unknown_study_and_non_sweep_folder(tmp_path):
    cli = [sys.executable, "-m", "lrtransfer.cli"]
    bad = subprocess.run([*cli, "demo", "--study", "nope", "--out", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode != 0 and "--study" in bad.stderr
    bad = subprocess.run([*cli, "report", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode != 0 and "no plan.csv" in bad.stderr


def test_warmups_study_declares_the_figure6_arms():
    spec = load_spec(study_spec("warmups"))
    arms = spec.warmup_arms
    assert sorted(arms) == ["decay_away", "exp", "warmup10", "warmup50"]
    assert all(spec.arms[a]["optim.lr_scaling"] == "none" for a in arms)  # "without muP"
