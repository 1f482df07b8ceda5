"""Analysis of sweep frames: best LR, shift, regret and verdicts on exact parabolas; dynamics summaries."""

import numpy as np
import pandas as pd
import pytest

from lrtransfer import theory
from lrtransfer.analysis import (
    best_lrs,
    layer_lrs,
    lr_curves,
    optimum_shift,
    representative_layer,
    verdict_table,
    verdicts,
    warmup_ratio_prediction,
)
from lrtransfer.config import resolve

GRID = 1e-3 * 2.0 ** np.arange(8)  # ratio 2: one grid step = one octave
A, C = 0.05, 2.0


def parabola(lr, opt):
    return C + A * np.log2(lr / opt) ** 2


def sweep(optima: dict, seeds=(0,), grid=GRID, phase=2):
    """Exact parabolas in log2 LR; ``optima[arm][m]`` is the optimum of that arm at width m."""
    rows = [dict(phase=phase, arm=arm, width_mult=m, lr=lr, seed=s, status="done", final_train_loss=parabola(lr, opt))
            for arm, per_width in optima.items() for m, opt in per_width.items() for lr in grid for s in seeds]
    return pd.DataFrame(rows)


OPT = 5.3e-3  # between grid points
TRANSFER = {"independent": {1: OPT, 2: OPT, 4: OPT}, "standard": {1: OPT, 2: 2 * OPT, 4: 4 * OPT}}


def test_fitted_optimum_recovers_the_parabola_vertex():
    best = best_lrs(sweep(TRANSFER)).set_index(["arm", "width_mult"])
    assert best.fit.all() and not best.at_edge.any()
    np.testing.assert_allclose(best.lr_fit.loc["independent"], OPT, rtol=1e-9)
    np.testing.assert_allclose(best.lr_fit.loc["standard"], [OPT, 2 * OPT, 4 * OPT], rtol=1e-9)
    np.testing.assert_allclose(best.loss_fit, C, rtol=1e-12)
    assert best.lr_grid.loc[("independent", 1)] == 4e-3 and best.grid_ratio.eq(2.0).all()
    assert best.loss_grid.loc[("independent", 1)] == pytest.approx(parabola(4e-3, OPT))


@pytest.mark.parametrize("arm, steps, per_doubling, verdict", [
    ("independent", 0.0, 0.0, "transfers"),
    ("standard", 2.0, 1.0, "does not transfer"),  # lr* ∝ m: one octave per doubling, 1× -> 4× = 2 grid steps
])
def test_shift_and_verdict(arm, steps, per_doubling, verdict):
    table = verdict_table(best_lrs(sweep(TRANSFER))).set_index("arm")
    assert table.grid_steps[arm] == pytest.approx(steps, abs=1e-9)
    assert table.per_doubling[arm] == pytest.approx(per_doubling, abs=1e-9)
    # exact curves: no noise, so the 90% interval is the point itself
    assert table.per_doubling_lo[arm] == pytest.approx(per_doubling, abs=1e-9) == table.per_doubling_hi[arm]
    assert table.verdict[arm] == verdict
    assert table.text[arm].startswith(f"{arm}: {per_doubling:+.2f} ± 0.00 octaves per width doubling (90% CI ")
    assert table.text[arm].split(" — ")[1].startswith(f"{verdict}; regret ")


def test_grid_steps_use_the_grid_ratio_and_the_tolerance_is_in_octaves():
    grid = 1e-3 * 4.0 ** np.arange(5)  # ratio 4: one grid step = two octaves
    shift = optimum_shift(best_lrs(sweep({"standard": {1: 2e-2, 4: 8e-2}}, grid=grid))).iloc[0]
    assert shift.shift_log2 == pytest.approx(2.0) and shift.grid_steps == pytest.approx(1.0)
    grid_steps = optimum_shift(best_lrs(sweep(TRANSFER)), grid_ratio=4.0).set_index("arm").grid_steps
    assert grid_steps["standard"] == pytest.approx(1.0)
    table = verdict_table(best_lrs(sweep(TRANSFER)), tolerance=1.5).set_index("arm")  # 1 octave/doubling is inside
    assert table.text["independent"].split(" — ")[1] == "transfers; regret 0 (90% CI 0…0)"
    # ... but reusing standard's 1× optimum OPT at 4× (optimum 4·OPT, 2 octaves away) costs far more than the
    # noise, here 0: a shift inside the tolerance with a clear regret does not "transfer"
    regret = parabola(OPT, 4 * OPT) - C
    assert table.max_regret["standard"] == pytest.approx(regret) and table.m_regret["standard"] == 4
    assert table.verdict["standard"] == "inconclusive"
    assert table.text["standard"].split(" — ")[1] == (
        f"inconclusive (the shift is within ±1.5, but reusing the 1× LR costs {regret:.2g} at 4×, more than one "
        f"seed's noise 0); regret {regret:.2g} (90% CI {regret:.2g}…{regret:.2g})")
    with pytest.raises(ValueError, match="tolerance"):
        verdict_table(best_lrs(sweep(TRANSFER)), tolerance=0)


def test_edge_optimum_is_flagged_and_not_trusted():
    best = best_lrs(sweep({"standard": {1: OPT, 4: 0.5}})).set_index("width_mult")  # 0.5 is far past the grid
    assert best.at_edge[4] and not best.fit[4] and best.lr_fit[4] == GRID[-1] and best.loss_fit[4] == best.loss_grid[4]
    line = verdicts(best.reset_index())[0]
    assert "edge of the grid" in line and "transfers" not in line


def test_unstable_points_are_inf_and_do_not_move_the_fit():
    df = sweep(TRANSFER)
    high = df.lr >= 6.4e-2
    df.loc[high, "status"] = "diverged"
    df.loc[high, "final_train_loss"] = np.nan
    df.loc[(df.lr == GRID[0]) & (df.arm == "independent"), "final_train_loss"] = np.inf  # inf metric = unstable
    curves = lr_curves(df)
    assert np.isinf(curves.loss[curves.lr >= 6.4e-2]).all() and curves.n_unstable[curves.lr >= 6.4e-2].eq(1).all()
    best = best_lrs(df).set_index(["arm", "width_mult"])
    np.testing.assert_allclose(best.lr_fit.loc["independent"], OPT, rtol=1e-9)
    assert best.fit.all()


def test_unstable_neighbour_keeps_the_grid_point():
    df = sweep({"independent": {1: OPT}})
    df.loc[df.lr == 8e-3, "status"] = "failed"
    row = best_lrs(df).iloc[0]
    assert row.lr_grid == 4e-3 and not row.fit and not row.at_edge and row.lr_fit == pytest.approx(4e-3, rel=1e-12)


def test_seeds_are_averaged_and_one_unstable_seed_makes_the_lr_unstable():
    df = sweep({"independent": {1: OPT, 2: OPT}}, seeds=(0, 1))
    df.loc[df.seed == 0, "final_train_loss"] += 0.01
    df.loc[df.seed == 1, "final_train_loss"] -= 0.01
    best = best_lrs(df)
    np.testing.assert_allclose(best.lr_fit, OPT, rtol=1e-9)
    np.testing.assert_allclose(best.loss_fit, C, rtol=1e-12)
    df.loc[(df.seed == 1) & (df.lr == GRID[-1]), "status"] = "diverged"
    curves = lr_curves(df)
    assert np.isinf(curves.loss[curves.lr == GRID[-1]]).all() and curves.n_seeds.eq(2).all()


@pytest.mark.parametrize("status", ["pending", "running"])  # running: in flight, or killed mid-run
def test_pending_and_running_runs_and_other_phases_are_left_out(status):
    df = pd.concat([sweep(TRANSFER), sweep({"independent": {1: 1e-2}}, phase=1)])
    df = pd.concat([df, df.iloc[:3].assign(status=status, final_train_loss=np.nan)])
    df["phase"] = df.phase.astype(str)  # e.g. after a CSV round trip
    best = best_lrs(df)
    assert len(best) == 6 and (best.n_lrs == len(GRID)).all()
    np.testing.assert_allclose(best.lr_fit[best.arm == "independent"], OPT, rtol=1e-9)
    curves = lr_curves(df)
    assert curves.n_unstable.eq(0).all() and np.isfinite(curves.loss).all()


def test_regret_is_the_loss_at_the_base_widths_best_lr():
    best = best_lrs(sweep(TRANSFER)).set_index(["arm", "width_mult"])
    assert best.regret.loc["independent"].eq(0).all() and best.regret[("standard", 1)] == 0
    # 4×: the 1× grid best is 4e-3; the 4× optimum is 4·OPT = 2.12e-2, whose grid best is 1.6e-2
    expected = parabola(4e-3, 4 * OPT) - parabola(1.6e-2, 4 * OPT)
    assert best.regret[("standard", 4)] == pytest.approx(expected, rel=1e-12)
    assert best.transfer_lr[("standard", 4)] == 4e-3


def test_regret_uses_the_nearest_grid_point_when_grids_differ():
    wide = sweep({"standard": {4: 4 * OPT}}, grid=GRID * 1.3)
    best = best_lrs(pd.concat([sweep({"standard": {1: OPT}}), wide])).set_index("width_mult")
    assert best.transfer_lr[4] == pytest.approx(4e-3 * 1.3)  # nearest in log to the 1× best (4e-3)
    assert best.regret[4] == pytest.approx(parabola(4e-3 * 1.3, 4 * OPT) - best.loss_grid[4])


# --- dynamics -----------------------------------------------------------------------------------

LLAMA = [f"layers.{i}.{n}" for i in range(4) for n in ("attention.wq", "feed_forward.w1", "feed_forward.w2")]


def align_frame(ratio_of_step, layers=tuple(LLAMA) + ("output",), steps=range(0, 100, 10), widths=(1, 4)):
    """Records with alignment_ratio = ratio_of_step(step, width, layer index) and RRC = 2·ratio."""
    rows = []
    for m in widths:
        for seed in (0, 1):
            for t in steps:
                for j, layer in enumerate(layers):
                    r = ratio_of_step(t, m, j) + (0.1 if seed else -0.1)
                    rows.append(dict(config_hash=f"h{m}{seed}", phase=2, arm="independent", width_mult=m, lr=1e-2,
                                     seed=seed, step=t, layer=layer, role="output" if layer == "output" else "hidden",
                                     fan_in=32 * m, alignment_ratio=r, relative_update=2.0, relative_repr_change=2 * r))
    return pd.DataFrame(rows)


def test_representative_layer():
    assert representative_layer(align_frame(lambda t, m, j: 1.0)) == "layers.2.feed_forward.w1"
    mlp = align_frame(lambda t, m, j: 1.0, layers=("layers.0", "layers.1", "layers.2", "layers.3", "output"))
    mlp.loc[mlp.layer == "layers.0", "role"] = "input"
    assert representative_layer(mlp) == "layers.2"  # hidden: layers.1-3, the middle one


# --- Eq 38 along the runs' LRs --------------------------------------------------------------------


def test_layer_lrs_follow_the_scaling_rules():
    cfg = resolve(preset="lm-shakespeare", overrides=["model.width=128", "optim.lr=0.01", "run.steps=200"])
    lrs, wd = layer_lrs(cfg.to_dict(), "hidden")
    assert lrs.shape == (200,) and lrs.max() == pytest.approx(0.01 / 4)
    assert wd == pytest.approx(4 * cfg.optim.weight_decay)
    lrs_in, wd_in = layer_lrs(cfg, "input")
    assert lrs_in.max() == pytest.approx(cfg.optim.fixed_lr) and wd_in == cfg.optim.weight_decay
    assert layer_lrs(cfg, "gain")[1] == 0.0
    std = resolve(preset="lm-shakespeare", overrides=["model.width=128", "optim.wd_scaling=standard"])
    assert layer_lrs(std, "hidden")[1] == std.optim.weight_decay


def test_warmup_prediction_counts_whole_steps_and_is_near_eq39_for_constant_lrs():
    eta, lam, m, rho0 = 4e-3, 0.1, 16, 0.05
    t = np.arange(3000)
    s = warmup_ratio_prediction((np.full(3000, eta / m), m * lam), (np.full(3000, eta), lam), rho0)
    rho, rho_hat = theory.rms_trajectory(np.full(3000, eta), lam, rho0), theory.rms_trajectory(
        np.full(3000, eta / m), m * lam, rho0)
    whole = np.hypot(eta / m / rho_hat[:-1], eta * lam) / np.hypot(eta / rho[:-1], eta * lam)  # decay term ηλ alike
    np.testing.assert_allclose(s, whole, rtol=1e-9)
    np.testing.assert_allclose(s, theory.warmup_effect(t, m, eta, lam, rho0), rtol=0.01)  # λ = 0.1: Eq 39 within 1%
    assert s[0] == pytest.approx(1 / m, rel=0.01)


def test_a_missing_column_is_named():
    with pytest.raises(ValueError, match="'val_loss'"):
        best_lrs(sweep(TRANSFER), metric="val_loss")


def test_refine_points_are_the_lrs_around_each_inconclusive_optimum_at_the_base_and_widest_width():
    from lrtransfer.analysis import analyze
    from lrtransfer.sweep.stages import refine_points

    rng = np.random.default_rng(0)
    df = sweep({"independent": {1: OPT, 2: OPT, 4: OPT}, "edge": {1: OPT, 2: OPT * 2**0.25, 4: OPT * 2**0.5}})
    noisy = df.arm == "edge"  # a shift on the tolerance, in seed noise: the interval straddles 0.25
    df.loc[noisy, "final_train_loss"] += 0.008 * rng.standard_normal(noisy.sum())
    table = verdict_table(best_lrs(df)).set_index("arm")
    assert table.verdict["independent"] == "transfers" and table.verdict["edge"] == "inconclusive"
    points = refine_points(analyze(df))
    assert [(arm, m) for arm, m, _ in points] == [("edge", 1.0), ("edge", 4.0)]
    curves = lr_curves(df)
    for arm, m, lrs in points:
        c = curves[(curves.arm == arm) & (curves.width_mult == m)].sort_values("lr").reset_index(drop=True)
        i = int(c.loss.idxmin())
        assert lrs == c.lr[max(0, i - 1): i + 2].tolist()  # the grid optimum and its two neighbours
