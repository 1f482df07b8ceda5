"""Optima with intervals and verdicts on synthetic curves and sweeps of known optimum.

The sweeps come from bench/verdict_benchmark.py, whose full run measures the rates; here a few
draws per setting, seeded, check the same behaviour.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrtransfer.analysis import Curve, best_lrs, fit_arm, verdict_table
from lrtransfer.analysis.curve_models import RATIOS

_spec = importlib.util.spec_from_file_location(
    "verdict_benchmark", Path(__file__).parents[1] / "bench" / "verdict_benchmark.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

X = np.log2(bench.GRID)
DRAWS = 200  # bootstrap draws per fit: enough for a 90% interval here, and fast
COVERAGE_SHAPES = ("symmetric", "asymmetric", "flat-low")  # the shapes whose coverage is checked here


def curve(shape: str, noise: float, rng: np.random.Generator) -> tuple[Curve, float]:
    """One seed of a benchmark curve with its optimum at a random place mid-grid, and that optimum."""
    a, opt = np.exp(rng.uniform(np.log(0.015), np.log(0.05))), X[3] + rng.uniform(-0.5, 0.5)
    u = X - opt
    y = 2.0 + bench.shape_loss(shape, u, a) + noise * rng.standard_normal(len(X))
    return Curve(X, np.where(u > bench.DIVERGE[shape], np.inf, y), np.ones(len(X)), np.full(len(X), np.nan)), opt


def test_the_optimum_lies_in_its_90_percent_interval_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    hits, widths = {s: [] for s in COVERAGE_SHAPES}, []
    for k in range(150):
        shape = COVERAGE_SHAPES[k % 3]
        c, opt = curve(shape, 0.008, rng)
        row = fit_arm([c], draws=DRAWS, seed=k).rows[0]
        hits[shape].append(row["x_lo"] <= opt <= row["x_hi"])
        widths.append(row["x_hi"] - row["x_lo"])
    coverage = np.mean([h for v in hits.values() for h in v])
    assert 0.8 <= coverage <= 0.97, coverage
    assert min(np.mean(v) for v in hits.values()) >= 0.75, {s: np.mean(v) for s, v in hits.items()}
    assert np.median(widths) < 1.0  # octaves: an interval that says something (the grid spans 6)


def test_a_curve_of_either_models_shape_is_recovered_exactly():
    x0, r = X[3] + 0.3, RATIOS[4]  # TwoSided's low/high curvature ratio r comes from a grid
    cubic = 2 + 0.03 * (X - x0) ** 2 + 0.004 * (X - x0) ** 3
    for y in (2 + 0.03 * (X - x0) ** 2, np.where(X < X[-1], cubic, np.inf), 2 + np.where(X < x0, r, 1) * (X - x0) ** 2):
        row = fit_arm([Curve(X, y, np.ones(7), np.full(7, np.nan))], draws=DRAWS).rows[0]
        assert row["x_opt"] == pytest.approx(x0, abs=1e-6) and row["interior"] and not row["edge"]


def test_unstable_points_bound_the_window_and_the_interval():
    rng = np.random.default_rng(1)
    c, opt = curve("symmetric", 0.008, rng)
    y = c.y.copy()
    y[X > opt + 1.2] = np.inf  # diverged from 1.2 octaves above the optimum
    row = fit_arm([Curve(X, y, c.n, c.sd)], draws=DRAWS).rows[0]
    last_stable = X[np.isfinite(y)].max()
    assert row["n_fit"] == np.isfinite(y).sum() and row["x_hi"] <= last_stable and not row["edge"]
    y[X > X[3]] = np.inf  # the grid minimum's right neighbour diverged: bounded by the last stable LR
    y[:3] = 2.0 + 0.03 * (X[:3] - (X[3] + 0.4)) ** 2
    y[3] = 2.0 + 0.03 * 0.4**2
    row = fit_arm([Curve(X, y, c.n, c.sd)], draws=DRAWS).rows[0]
    assert row["x_opt"] == pytest.approx(X[3]) and not row["interior"] and not row["edge"]


@pytest.mark.parametrize("where, extend", [(X[-1] + 1.5, "high"), (X[0] - 1.5, "low")])
def test_an_optimum_past_the_grid_is_not_claimed_and_says_which_way(where, extend):
    y = 2 + 0.03 * (X - where) ** 2
    row = fit_arm([Curve(X, y, np.ones(7), np.full(7, np.nan))], draws=DRAWS).rows[0]
    assert row["edge"] == extend and row["x_opt"] == (X[-1] if extend == "high" else X[0])


def test_three_stable_points_and_one_seed_use_the_noise_prior():
    y = np.full(7, np.inf)
    y[1:4] = 2 + 0.03 * (X[1:4] - X[2] - 0.2) ** 2  # stable only at 3 LRs: no residual to estimate noise from
    curves = [Curve(X, y, np.ones(7), np.full(7, np.nan)), Curve(X, y - 0.1, np.ones(7), np.full(7, np.nan))]
    widths = []
    for noise in (0.002, 0.016):
        fit = fit_arm(curves, noise=noise, draws=DRAWS)
        assert fit.noise_source == "prior" and fit.noise == noise
        widths.append(fit.rows[0]["x_hi"] - fit.rows[0]["x_lo"])
    assert widths[1] > 3 * widths[0] > 0


def test_seeds_measure_the_noise():
    rng = np.random.default_rng(2)
    frame = bench.synthetic_sweep(rng, "symmetric", 0.01, 4, 0.0)
    best = best_lrs(frame, draws=DRAWS)
    assert set(best.noise_source) == {"seeds"} and best.noise.iloc[0] == pytest.approx(0.01, rel=0.2)
    assert (best.n_seeds == 4).all()


@pytest.mark.parametrize("value, field", [(0.0, "noise"), (-1.0, "noise")])
def test_bad_noise_is_named(value, field):
    with pytest.raises(ValueError, match=field):
        fit_arm([Curve(X, 2 + X**2, np.ones(7), np.full(7, np.nan))], noise=value)


def test_too_few_draws_are_named():
    with pytest.raises(ValueError, match="draws"):
        best_lrs(bench.synthetic_sweep(np.random.default_rng(0), "symmetric", 0.008, 1, 0.0), draws=5)


# shape, noise, seeds, shift, sweeps, fewest right decisive verdicts (no wrong one is ever allowed)
TABLE = [
    ("symmetric", 0.008, 1, 0.0, 6, 6),
    ("asymmetric", 0.008, 1, 0.0, 6, 5),
    ("flat-low", 0.008, 1, 0.0, 6, 5),
    ("asymmetric", 0.008, 1, 0.5, 6, 5),
    ("flat-low", 0.008, 1, 1.0, 6, 6),
    ("symmetric", 0.002, 3, 0.5, 4, 4),
    ("asymmetric", 0.02, 1, 0.0, 6, 0),  # noisy, one seed: mostly inconclusive, never wrong
    ("flat-low", 0.008, 1, 0.25, 6, 0),  # on the tolerance: neither verdict is right
]


@pytest.mark.parametrize("row", range(len(TABLE)), ids=["-".join(map(str, r[:4])) for r in TABLE])
def test_verdicts_on_synthetic_sweeps(row):
    shape, noise, seeds, shift, sweeps, right = TABLE[row]
    rng = np.random.default_rng(100 + row)
    verdicts, covered = [], []
    for _ in range(sweeps):
        table = verdict_table(best_lrs(bench.synthetic_sweep(rng, shape, noise, seeds, shift), draws=DRAWS))
        verdicts.append(table.verdict.iloc[0])
        covered.append(table.per_doubling_lo.iloc[0] <= shift <= table.per_doubling_hi.iloc[0])
    judged = [bench.right_and_wrong(shift, v) for v in verdicts]
    assert not any(wrong for _, wrong in judged), verdicts
    assert sum(r for r, _ in judged) >= right, verdicts
    assert set(verdicts) <= {"transfers", "does not transfer", "inconclusive"}
    assert sum(covered) >= sweeps - 1  # the shift's 90% interval holds the true shift
    if abs(shift) == 0.25:
        assert verdicts.count("inconclusive") >= sweeps - 1


def test_inconclusive_says_what_to_run_and_regret_is_in_the_line():
    rng = np.random.default_rng(5)
    table = verdict_table(best_lrs(bench.synthetic_sweep(rng, "symmetric", 0.02, 1, 0.25), draws=DRAWS)).iloc[0]
    assert table.verdict == "inconclusive"
    assert "seeds (now 1) at LRs " in table.next_step and " at 1×" in table.next_step and " at 4×" in table.next_step
    assert table.text.startswith("synthetic: ") and " octaves per width doubling (90% CI " in table.text
    assert f"— inconclusive ({table.next_step}); regret " in table.text


def test_a_curve_bounded_by_instability_asks_for_a_finer_grid():
    rng = np.random.default_rng(6)
    frame = bench.synthetic_sweep(rng, "symmetric", 0.008, 1, 0.25)  # on the tolerance: inconclusive
    best = best_lrs(frame, draws=DRAWS)
    keep = best.lr_grid.iloc[-1] * 2.0 ** np.arange(-1, 2)  # at 4× only the grid minimum and its neighbours
    unstable = (frame.width_mult == 4) & ~np.isclose(frame.lr.to_numpy()[:, None], keep).any(axis=1)
    table = verdict_table(best_lrs(frame.assign(status=frame.status.where(~unstable, "diverged")), draws=DRAWS))
    assert table.verdict.iloc[0] == "inconclusive"
    assert table.next_step.iloc[0].startswith("a finer LR grid around ")
    assert table.next_step.iloc[0].endswith("at 4× (3 stable points to fit)")


def test_edge_and_unstable_and_one_width_verdicts():
    rng = np.random.default_rng(7)
    frame = bench.synthetic_sweep(rng, "symmetric", 0.002, 1, 1.0)
    frame = frame[~((frame.width_mult == 4) & (frame.lr > 1e-2))]  # the 4× optimum is now past the grid
    table = verdict_table(best_lrs(frame, draws=DRAWS)).iloc[0]
    assert table.verdict == "edge of grid" and "extend the grid higher than 0.008 at 4×" in table.text
    gone = frame.assign(status=np.where(frame.width_mult == 2, "failed", frame.status))
    assert verdict_table(best_lrs(gone, draws=DRAWS)).verdict.iloc[0] == "no stable run"
    one = verdict_table(best_lrs(frame[frame.width_mult == 1], draws=DRAWS)).iloc[0]
    assert one.verdict == "one width" and one.text == "synthetic: only width 1× was run — one width"


def test_the_best_table_keeps_the_columns_plots_and_reports_read():
    best = best_lrs(bench.synthetic_sweep(np.random.default_rng(8), "flat-low", 0.008, 1, 0.5), draws=DRAWS)
    old = ["arm", "width_mult", "lr_grid", "loss_grid", "lr_fit", "loss_fit", "at_edge", "regret", "transfer_lr",
           "loss_at_transfer", "grid_ratio", "n_lrs"]
    assert set(old) <= set(best.columns) and np.isfinite(best.lr_fit).all() and best.optimum_claimed.all()
    assert (best.lr_lo <= best.lr_fit).all() and (best.lr_fit <= best.lr_hi).all()
    table = verdict_table(best)
    assert {"arm", "text", "verdict", "per_doubling", "grid_steps", "max_regret"} <= set(table.columns)
    assert isinstance(table, pd.DataFrame) and len(table) == 1


def test_the_pilot_lm_sweep():
    """Final validation loss of the byte-level LM, one seed (shared/notes/pilot-lm-cpu.md, pilot 2):
    standard's optimum moves about half an octave per width doubling, independent's stays put."""
    lrs = [2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2, 6.4e-2]
    base = [1.8243, 1.7714, 1.7743, 1.7883, 1.8372, 1.9264]  # width 32: the same run for both rules
    data = {("standard", 1): base, ("standard", 2): [1.8029, 1.7160, 1.6802, 1.6823, 1.7336, 1.7740],
            ("standard", 4): [1.7082, 1.6071, 1.5669, 1.5753, 1.6070, 1.6548], ("independent", 1): base,
            ("independent", 2): [1.7743, 1.7177, 1.7045, 1.7284, 1.7922, 1.8388],
            ("independent", 4): [1.6735, 1.6129, 1.6408, 1.6783, 1.7251, 1.8116]}
    frame = pd.DataFrame([{"phase": 2, "arm": arm, "width_mult": m, "lr": lr, "seed": 0, "status": "done",
                           "final_train_loss": y} for (arm, m), ys in data.items() for lr, y in zip(lrs, ys)])
    table = verdict_table(best_lrs(frame)).set_index("arm")
    assert table.verdict["standard"] == "does not transfer" and table.per_doubling["standard"] > 0.25
    assert table.verdict["independent"] in ("transfers", "inconclusive")
    assert table.per_doubling_lo["independent"] < 0 < table.per_doubling_hi["independent"]
