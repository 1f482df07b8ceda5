"""Study figures from synthetic sweep frames: files written, numbers equal the input, absent inputs skip."""

import numpy as np
import pandas as pd
import pytest

from lrtransfer import theory
from lrtransfer.analysis import layer_lrs
from lrtransfer.analysis.picks import figure5_lrs
from lrtransfer.config import resolve
from lrtransfer.plots.study import (
    FigureInfo,
    alignment_data,
    layer_alignment_data,
    plot_alignment,
    plot_layer_alignment,
    plot_rrc,
    plot_transfer,
    plot_warmup_effect,
    rrc_data,
    transfer_data,
    warmup_effect_data,
    warmup_transfer_data,
    write_study_figures,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDTHS, BASE = (1, 2, 4, 8), 32
LRS = 1e-3 * 2.0 ** np.arange(8)
OPTIMA = {"none": (1.6e-2, 0.3), "standard": (8e-3, 0.8), "independent": (8e-3, 0.0),  # (lr* at 1×, exponent of m)
          "warmup50": (4e-3, 0.5), "exp50": (8e-3, 0.15)}
WARMUP_ARMS = ["warmup50", "exp50"]
DYN_LR, STEPS, EVERY = 8e-3, 1500, 25
COLUMNS = {"figure1_transfer": {"arm", "width_mult", "lr", "loss", "opt_lr", "verdict"},
           "figure3_rrc": {"arm", "width_mult", "step", "relative_repr_change", "alignment_ratio", "relative_update"},
           "figure4_alignment": {"width_mult", "step", "weight_alignment", "update_alignment", "alignment_ratio"},
           "figure5_warmup_effect": {"step", "ratio_predicted"},
           "figure6_warmup_transfer": {"arm", "width_mult", "lr", "loss", "opt_lr"},
           "figure16_layer_alignment": {"width_mult", "layer", "alignment_ratio"}}
LAYERS = [(f"layers.{i}.{n}", k) for i in range(2) for n, k in
          [("attention.wq", 1), ("attention.wk", 1), ("attention.wv", 1), ("attention.wo", 1),
           ("feed_forward.w1", 1), ("feed_forward.w2", 3), ("feed_forward.w3", 1)]] + [("output", 1)]


def config(m, lr, wd_scaling="independent", lr_scaling="mup"):
    return resolve(preset="lm-shakespeare", overrides=[
        f"model.width={BASE * m}", f"optim.lr={lr}", f"optim.wd_scaling={wd_scaling}",
        f"optim.lr_scaling={lr_scaling}", f"run.steps={STEPS}"]).to_dict()


def make_results(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for arm, (lr0, power) in OPTIMA.items():
        for m in WIDTHS:
            for lr in LRS:
                x = np.log2(lr / (lr0 * m**power))
                for s in (0, 1):
                    bad = x > 2.5
                    loss = np.nan if bad else 1.6 - 0.08 * np.log2(m) + 0.03 * x**2 + 0.004 * rng.standard_normal()
                    rows.append(dict(phase=2, arm=arm, width_mult=m, width=BASE * m, lr=lr, fixed_lr=1e-2, seed=s,
                                     config_hash=f"{arm}-{m}-{lr:g}-{s}", status="diverged" if bad else "done",
                                     final_train_loss=loss, val_loss=loss, folder=""))
    rows.append(dict(phase=1, arm="independent", width_mult=1, width=BASE, lr=1e-2, seed=0, config_hash="p1",
                     status="done", final_train_loss=1.0))  # phase 1: never in the phase-2 figures
    rows.append(dict(phase="dynamics", arm="no_mup", width_mult=8, width=BASE * 8, lr=DYN_LR, seed=0,
                     config_hash="dyn", status="done", final_train_loss=1.5))
    df = pd.DataFrame(rows)
    wd = {"none": "none", "standard": "standard"}
    df["config"] = [config(r.width_mult, r.lr, wd.get(r.arm, "independent")) if r.arm in ("independent", "standard")
                    and r.width_mult in (1, 8) and r.seed == 0 else None for r in df.itertuples()]
    df.loc[df.config_hash == "dyn", "config"] = pd.Series([config(8, DYN_LR, "independent", "none")],
                                                          index=df.index[df.config_hash == "dyn"])
    return df


def run_records(cfg, plan, seed):
    """Monitor-like records: rel. update from the RMS model along the run's LRs, a ratio decaying to ≈ 1."""
    rng = np.random.default_rng(seed)
    steps = np.arange(0, STEPS, EVERY)
    lrs, wd = layer_lrs(cfg, "hidden")
    rows = []
    for j, (name, k) in enumerate(LAYERS):
        fan_in = BASE * plan["width_mult"] * k
        rel = theory.relative_update(lrs, wd, fan_in**-0.5)[steps] * (1 + 0.3 * np.exp(-steps / 300))
        ratio = (1.1 + 0.05 * j) + (0.5 * np.sqrt(fan_in) - 1) * np.exp(-steps / 60)
        w_align = fan_in**-0.5 + (0.25 - fan_in**-0.5) * (1 - np.exp(-steps / 150))
        noise = np.exp(0.05 * rng.standard_normal((3, len(steps))))
        rows.append(pd.DataFrame(dict(
            step=steps, layer=name, role="output" if name == "output" else "hidden", fan_in=fan_in,
            fan_out=BASE * plan["width_mult"], weight_alignment=w_align * noise[0],
            update_alignment=w_align * ratio * noise[1], alignment_ratio=ratio * noise[1] / noise[0],
            relative_update=rel * noise[2], relative_repr_change=ratio * noise[1] / noise[0] * rel * noise[2],
            **plan)))
    return pd.concat(rows, ignore_index=True)


def make_align(results):
    keys = ["config_hash", "arm", "phase", "width_mult", "width", "lr", "seed"]
    m, lr_standard, lr_independent = figure5_lrs(results)  # the Figure 5 pair at the widest width (G.3.4)
    pair = (results.width_mult == m) & (results.phase == 2) & (
        ((results.arm == "standard") & np.isclose(results.lr, lr_standard))
        | ((results.arm == "independent") & np.isclose(results.lr, lr_independent)))
    pick = results[(results.arm.isin(["standard", "independent"]) & results.width_mult.isin([1, 8])
                    & np.isclose(results.lr, DYN_LR) & (results.phase == 2)) | (results.phase == "dynamics") | pair]
    frames = []
    for i, r in enumerate(pick.itertuples()):
        cfg = r.config if r.config is not None else config(r.width_mult, r.lr, "standard" if r.arm == "standard"
                                                           else "independent")
        frames.append(run_records(cfg, {k: getattr(r, k) for k in keys}, i))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def study():
    results = make_results()
    return results, make_align(results)


@pytest.fixture(scope="module")
def written(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return out, {f.name: f for f in write_study_figures(*study, out, warmup_arms=WARMUP_ARMS)}


def test_every_figure_written_with_its_numbers(written):
    out, figs = written
    assert sorted(figs) == sorted(["figure1_transfer", "figure3_rrc", "figure4_alignment", "figure5_warmup_effect",
                                   "figure6_warmup_transfer", "figure16_layer_alignment"])
    for f in figs.values():
        assert isinstance(f, FigureInfo) and f.png.parent == out and f.csv == f.png.with_suffix(".csv")
        assert f.png.read_bytes()[:8] == PNG_MAGIC and f.png.stat().st_size > 10_000
        df = pd.read_csv(f.csv)
        assert COLUMNS[f.name] <= set(df.columns), f.name
        assert len(df) > 0 and f.title and 40 < len(f.caption) < 500
    f1 = pd.read_csv(figs["figure1_transfer"].csv).groupby(["arm", "width_mult"]).opt_lr.first()
    assert np.allclose(np.log2(f1["independent"] / 8e-3), 0, atol=0.5)  # the planted optima, read off the CSV
    assert np.log2(f1["standard"][8] / f1["standard"][1]) == pytest.approx(0.8 * 3, abs=0.5)


def test_figure1_loss_is_the_seed_mean_and_marks_divergence(study, written):
    results, _ = study
    df = pd.read_csv(written[0] / "figure1_transfer.csv")
    assert list(dict.fromkeys(df.arm)) == ["none", "standard", "independent"]  # warmup arms go to Figure 6
    r = results[(results.arm == "standard") & (results.width_mult == 4) & np.isclose(results.lr, 1.6e-2)]
    row = df[(df.arm == "standard") & (df.width_mult == 4) & np.isclose(df.lr, 1.6e-2)].iloc[0]
    assert row.loss == pytest.approx(r.final_train_loss.mean(), rel=1e-9) and row.n_seeds == 2
    assert (df.unstable == ~np.isfinite(df.loss)).all() and df.unstable.any()
    ind = df[df.arm == "independent"].drop_duplicates("width_mult")
    np.testing.assert_allclose(ind.opt_lr, 8e-3, rtol=0.15)  # the optimum stays put
    assert set(ind.verdict) == {"transfers"} and set(df[df.arm == "standard"].verdict) == {"does not transfer"}


def test_figure3_and_4_numbers_equal_the_records(study, written):
    _, align = study
    f3 = pd.read_csv(written[0] / "figure3_rrc.csv")
    assert set(f3.layer) == {"layers.1.feed_forward.w1"} and set(f3.width_mult) == {1, 8}
    assert set(f3.arm) == {"standard", "independent"} and np.allclose(f3.lr, DYN_LR)
    src = align[(align.arm == "standard") & (align.phase == 2) & (align.width_mult == 8) & (align.step == 500)
                & (align.layer == "layers.1.feed_forward.w1") & np.isclose(align.lr, DYN_LR)]
    got = f3[(f3.arm == "standard") & (f3.width_mult == 8) & (f3.step == 500)]
    assert got.relative_repr_change.iloc[0] == pytest.approx(src.relative_repr_change.mean(), rel=1e-9)
    assert f3.step.max() <= 0.995 * STEPS  # the final 0.5% is dropped
    f4 = pd.read_csv(written[0] / "figure4_alignment.csv")
    assert set(f4.width_mult) == {1, 8} and np.allclose(f4.lr, DYN_LR)  # dynamics run + its 1× partner
    src = align[(align.phase == "dynamics") & (align.step == 250) & (align.layer == "layers.1.feed_forward.w1")]
    assert f4[(f4.width_mult == 8) & (f4.step == 250)].weight_alignment.iloc[0] == pytest.approx(
        src.weight_alignment.iloc[0], rel=1e-9)


def full_step(eta, lam, rho0):
    """‖ΔW‖/‖W‖ of Eq 30's whole step, decay included: √((η/ρ)² + (ηλ)²), from the ρ recurrence."""
    rho = theory.rms_trajectory(eta, lam, rho0)[:-1]
    return np.sqrt((eta / rho) ** 2 + (eta * lam) ** 2)


def test_figure5_pairs_the_standard_best_at_the_widest_width_with_its_independent_twin(study, written):
    results, _ = study
    m, lr_standard, lr_independent = figure5_lrs(results)
    df = pd.read_csv(written[0] / "figure5_warmup_effect.csv")
    assert (m, lr_independent) == (8, lr_standard / 8)  # the same LR-WD product (G.3.4)
    assert df.lr_base.iloc[0] == lr_standard and df.lr_scaled.iloc[0] == lr_independent
    mult = resolve(preset="lm-shakespeare", overrides=[f"run.steps={STEPS}"])
    base_mult = mult.schedule.multipliers(STEPS, lr=mult.optim.lr, weight_decay=mult.optim.weight_decay, width_mult=8)
    lam = mult.optim.weight_decay
    eta, eta_hat = lr_standard / 8 * base_mult, lr_independent / 8 * base_mult  # the hidden layers' η
    rho0 = (BASE * 8) ** -0.5
    direct = full_step(eta_hat, 8 * lam, rho0) / full_step(eta, lam, rho0)
    np.testing.assert_allclose(df.ratio_predicted, direct[df.step.to_numpy()], rtol=1e-9)
    # starts just above 1/m: both whole steps carry the same decay term ηλ·W (equal LR-WD products)
    assert 1 / 8 < df.ratio_predicted.iloc[0] < 0.2 and df.ratio_predicted.iloc[-1] > 0.5
    np.testing.assert_allclose(df.ratio_measured, df.rel_update_scaled / df.rel_update_base)
    assert set(df.layer) == {"layers.1.feed_forward.w1"} and set(df.width_mult) == {8}


def test_figure5_takes_explicit_schedules_without_configs(study, tmp_path):
    results, align = study
    lrs = np.full(STEPS, 1e-2)
    df = warmup_effect_data(results.drop(columns="config"), align, scaled=(lrs / 8, 8.0), base=(lrs, 1.0))
    rho0 = (BASE * 8) ** -0.5
    expected = (full_step(lrs / 8, 8.0, rho0) / full_step(lrs, 1.0, rho0))[df.step.to_numpy()]
    np.testing.assert_allclose(df.ratio_predicted, expected, rtol=1e-9)
    eq39 = theory.warmup_effect(df.step.to_numpy(), 8, 1e-2, 1.0, rho0)  # the same ratio without the decay term
    assert np.all(df.ratio_predicted >= eq39 - 1e-12) and df.ratio_predicted.iloc[0] > eq39[0]
    no_prediction = warmup_effect_data(results.drop(columns="config"), align)
    assert no_prediction.ratio_predicted.isna().all()
    assert plot_warmup_effect(no_prediction, tmp_path / "f5.png").read_bytes()[:8] == PNG_MAGIC


def test_figure6_and_16_select_their_runs(study, written):
    _, align = study
    f6 = pd.read_csv(written[0] / "figure6_warmup_transfer.csv")
    assert list(dict.fromkeys(f6.arm)) == ["independent", "exp50", "warmup50"]
    f16 = pd.read_csv(written[0] / "figure16_layer_alignment.csv")
    assert set(f16.width_mult) == {1, 8} and len(f16) == 2 * len(LAYERS)
    assert f16[f16.width_mult == 8].layer.tolist() == [n for n, _ in LAYERS]  # module order
    step = f16.step.iloc[0]
    assert abs(step - STEPS / 2) <= EVERY
    src = align[(align.phase == "dynamics") & (align.step == step) & (align.layer == "output")]
    assert f16[(f16.width_mult == 8) & (f16.layer == "output")].alignment_ratio.iloc[0] == pytest.approx(
        src.alignment_ratio.iloc[0], rel=1e-9)


def test_figure16_falls_back_to_phase2_runs(study, tmp_path):
    results, align = study
    df = layer_alignment_data(results, align[align.phase.astype(str) != "dynamics"])
    assert set(df.width_mult) == {1, 8} and df.source.iloc[0] == "phase-2 independent runs"
    assert plot_layer_alignment(df, tmp_path / "f16.png").exists()


def test_missing_inputs_skip(study, tmp_path):
    results, align = study
    no_dyn = align[align.phase.astype(str) != "dynamics"]
    assert rrc_data(results, None) is None and alignment_data(results, no_dyn) is None
    assert warmup_effect_data(results, align[align.arm != "independent"]) is None  # no partner run
    assert layer_alignment_data(results, None) is None
    assert warmup_transfer_data(results[~results.arm.isin(WARMUP_ARMS)], WARMUP_ARMS) is None
    assert warmup_transfer_data(results) is None  # no arms declared: no Figure 6
    assert transfer_data(None) is None and transfer_data(results.drop(columns="final_train_loss")) is None
    for plot in (plot_transfer, plot_rrc, plot_alignment, plot_warmup_effect, plot_layer_alignment):
        assert plot(None, tmp_path / "x.png") is None
    figs = write_study_figures(results, None, tmp_path, warmup_arms=WARMUP_ARMS)
    assert [f.name for f in figs] == ["figure1_transfer", "figure6_warmup_transfer"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{f.name}.{e}" for f in figs for e in ("png", "csv"))


def test_every_figure_replots_from_its_csv(written, tmp_path):
    """The CSV beside a PNG is enough to redraw it (no training, no other frame)."""
    import matplotlib.pyplot as plt

    from lrtransfer.plots.study import FIGURES

    names = ("figure1_transfer", "figure5_warmup_effect", "figure16_layer_alignment")
    for fig in (f for f in FIGURES if f.name in names):
        df = pd.read_csv(written[1][fig.name].csv)
        again = fig.plot(df, tmp_path / f"{fig.name}.png")
        assert np.array_equal(plt.imread(again), plt.imread(written[1][fig.name].png)), fig.name  # the same picture
