"""Blow-ups, the curve-scaled noise prior, the recommendation at a target width, and `lrtransfer analyze`."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrtransfer.analysis import Curve, analyze, best_lrs, blowups, fit_arm, named_rules
from lrtransfer.analysis.foreign import read_sweep

_spec = importlib.util.spec_from_file_location(
    "verdict_benchmark", Path(__file__).parents[1] / "bench" / "verdict_benchmark.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

DRAWS = 200


@pytest.mark.parametrize("y, flagged", [
    ([2.7, 2.65, 2.6, 2.62, 2.7, 2.8, 6.5], [6]),  # a finite blow-up at the top LR
    ([2.7, 2.65, 2.6, 2.62, 2.7, 6.5, 7.0], [5, 6]),  # and everything beyond it
    ([2.7, 2.65, 2.6, 2.62, 3.6, 2.8, 2.9], [4, 5, 6]),  # a spike: it bounds the window on its side
    ([6.5, 2.7, 2.65, 2.6, 2.62, 2.7, 2.8], [0]),  # low side too
    ([2.6, 2.6, 2.601, 2.6, 2.65, 2.75, 2.9], []),  # leaving a plateau is part of the shape
    ([2.7, 2.65, 2.6, 2.62, 2.7, 2.8, np.inf], []),  # a divergence is unstable already
    ([2.7, 2.6, 9.0], []),  # too few points to judge
])
def test_blowups_are_points_far_above_their_neighbours(y, flagged):
    assert list(np.flatnonzero(blowups(np.array(y)))) == flagged


@pytest.mark.parametrize("offset", np.linspace(-0.5, 0.5, 5))
def test_an_exponential_high_lr_side_is_not_a_blowup(offset):
    u = np.arange(7.0) - 3 - offset
    assert not blowups(2 + 0.06 * (np.expm1(u) - u)).any()


def test_a_blowup_does_not_widen_the_interval():
    x = np.log2(bench.GRID)
    y = 2.6 + 0.03 * (x - x[3] - 0.2) ** 2 + 0.004 * np.random.default_rng(0).standard_normal(7)
    frame = lambda loss: pd.DataFrame({"phase": 2, "arm": "a", "width_mult": 1, "lr": bench.GRID, "seed": 0,  # noqa: E731
                                       "status": "done", "final_train_loss": loss})
    clean = best_lrs(frame(np.where(np.arange(7) == 6, np.nan, y)), draws=DRAWS).iloc[0]
    blown = best_lrs(frame(np.where(np.arange(7) == 6, 6.5, y)), draws=DRAWS).iloc[0]
    assert blown.n_blowup == 1 and clean.n_blowup == 0
    assert blown.lr_fit == pytest.approx(clean.lr_fit) and blown.lr_hi / blown.lr_lo == pytest.approx(
        clean.lr_hi / clean.lr_lo)


def test_the_noise_prior_scales_with_the_curve():
    """With too few points for residuals the prior is used; in other loss units the answer is the same."""
    x = np.log2(bench.GRID[:4])
    y = 2.0 + 0.03 * (x - x[1] - 0.3) ** 2 + np.array([0.004, -0.003, 0.002, -0.004])
    fits = [fit_arm([Curve(x, k * y, np.ones(4), np.full(4, np.nan))], draws=DRAWS) for k in (1.0, 1e-4)]
    rows = [f.rows[0] for f in fits]
    assert fits[0].noise_source == "residuals+prior"
    assert fits[1].noise == pytest.approx(1e-4 * fits[0].noise)
    assert rows[0]["x_lo"] == pytest.approx(rows[1]["x_lo"]) and rows[0]["x_hi"] == pytest.approx(rows[1]["x_hi"])


def _two_arms(noise=0.004, widths=(1, 2)) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    a = bench.synthetic_sweep(rng, "symmetric", noise, 1, 0.0, widths=widths).assign(arm="independent")
    b = bench.synthetic_sweep(rng, "symmetric", noise, 1, 1.0, widths=widths).assign(arm="standard")
    return pd.concat([a, b], ignore_index=True).assign(width=lambda d: d.width_mult * 32)


def test_the_recommendation_is_the_line_through_the_fitted_optima():
    """Two widths: the line passes through both optima, so the LR at m is a hand computation."""
    an = analyze(_two_arms(), draws=DRAWS, rules=named_rules(["standard", "independent"], 0.1))
    rec = an.recommend(1024, steps=5000)
    assert rec.width_mult == 32
    for arm in ("standard", "independent"):
        b = an.best[an.best.arm == arm].sort_values("width_mult")
        x1, x2 = np.log2(b.lr_fit.to_numpy())
        r = rec.table.set_index("arm").loc[arm]
        assert np.log2(r.lr) == pytest.approx(x1 + (x2 - x1) * np.log2(32), abs=1e-9)
        assert r.lr_lo < r.lr < r.lr_hi
        divisor = 32.0  # mup: hidden η/m; independent: λ·m
        assert r.hidden_lr == pytest.approx(r.lr / divisor)
        assert r.hidden_wd == pytest.approx(0.1 * (divisor if arm == "independent" else 1.0))
        assert r.timescales == pytest.approx(2 * r.hidden_lr * r.hidden_wd * 5000)
        assert f"lr={r.lr:.3g}" in r.call and f"wd_scaling={arm!r}" in r.call
    assert "does not transfer" in rec.table.set_index("arm").loc["standard", "warnings"]
    roles = rec.roles[rec.roles.arm == "independent"].set_index("role")
    assert roles.loc["input", "lr"] == pytest.approx(rec.table.set_index("arm").loc["independent", "lr"])


def test_the_interval_widens_with_the_extrapolation():
    an = analyze(_two_arms(), draws=DRAWS)
    near, far = (an.recommend(width_mult=m).table.set_index("arm").loc["standard"] for m in (4, 256))
    assert np.log2(far.lr_hi / far.lr_lo) > np.log2(near.lr_hi / near.lr_lo)
    assert "doublings of extrapolation" in far.warnings and "doublings of extrapolation" not in near.warnings


@pytest.mark.parametrize("kwargs, message", [({}, "one of them"), ({"width": -3.0}, "must be > 0"),
                                             ({"width_mult": 2, "steps": 0}, "steps")])
def test_bad_targets_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        analyze(_two_arms(), draws=DRAWS).recommend(**kwargs)


def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrtransfer.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_analyze_of_a_results_table_equals_the_report_of_the_frame(tmp_path):
    """A sweep's results written as a plain table and read back by `lrtransfer analyze` give the
    same verdicts and best-LR table as the analysis of the frame itself."""
    frame = _two_arms(widths=(1, 2, 4))
    table = frame.rename(columns={"final_train_loss": "val"})[["arm", "width", "lr", "seed", "status", "val"]]
    table.to_csv(tmp_path / "sweep.csv", index=False)
    done = _cli("analyze", tmp_path / "sweep.csv", "--out", tmp_path / "out", "--loss-column", "val")
    assert done.returncode == 0, done.stderr
    direct = analyze(frame)
    assert done.stdout.splitlines()[:2] == direct.verdicts
    read = analyze(read_sweep(tmp_path / "sweep.csv", {"loss": "val"}))
    cols = ["arm", "width_mult", "lr_fit", "lr_lo", "lr_hi", "arm_shift"]
    pd.testing.assert_frame_equal(read.best[cols], direct.best[cols], check_dtype=False)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Recommended LR at wider widths" in html and "figure1_transfer.png" in html
    rec = _cli("recommend", tmp_path / "out", "--width-mult", "16")
    assert rec.returncode == 0, rec.stderr
    assert "base LR" in rec.stdout and "standard (does not transfer)" in rec.stdout


@pytest.mark.parametrize("content, message", [
    ("arm,width,lr\nA,32,0.01\n", "no 'loss' column"),
    ("width,lr,loss\n32,abc,2.0\n", "row 1: column 'lr' is not a number: 'abc'"),
    ("width,lr,loss\n32,0.01,2.0\n64,-0.01,2.0\n", "row 2: column 'lr' must be a positive number"),
    ("lr,loss\n0.01,2.0\n", "neither a 'width' nor a 'width_mult' column"),
    ("width,lr,loss,status\n32,0.01,2.0,exploded\n", "row 1: column 'status' is 'exploded'"),
    ("arm,width,lr,loss\n,32,0.01,2.0\n", "row 1: column 'arm' is empty"),
])
def test_analyze_names_the_column_and_row_of_a_bad_file(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    done = _cli("analyze", tmp_path / "bad.csv", "--out", tmp_path / "out")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message in done.stderr and "bad.csv" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_arm_names_are_read_as_written(tmp_path):
    rows = [f"{arm},{w},{lr},{2 + (np.log2(lr) + 7) ** 2 / 50}" for arm in ("NA", "null")
            for w in (32, 64) for lr in bench.GRID]
    (tmp_path / "s.csv").write_text("arm,width,lr,loss\n" + "\n".join(rows) + "\n")
    assert set(read_sweep(tmp_path / "s.csv").arm) == {"NA", "null"}


def test_recommend_needs_a_sweep_folder(tmp_path):
    done = _cli("recommend", tmp_path, "--width", "1024")
    assert done.returncode == 2 and "holds no sweep" in done.stderr


def test_the_interval_widens_where_the_curve_is_flat():
    """Same noise, flatter curve: the optimum is pinned down less, and the interval says so."""
    x, rng = np.log2(bench.GRID), np.random.default_rng(0)
    medians = []
    for curvature in (0.05, 0.01, 0.003):
        widths = []
        for k in range(8):
            y = 2 + curvature * (x - x[3] - 0.2) ** 2 + 0.004 * rng.standard_normal(7)
            row = fit_arm([Curve(x, y, np.ones(7), np.full(7, np.nan))], draws=DRAWS, seed=k).rows[0]
            widths.append(row["x_hi"] - row["x_lo"])
        medians.append(np.median(widths))
    assert medians[0] < medians[1] < medians[2], medians
