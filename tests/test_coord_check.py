"""coord_check: the tidy frame, mup's activation test, the √m of Eq 5, the timescales of Eq 33-36, bad inputs."""

import contextlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lrtransfer
from lrtransfer.coord import coord_check
from lrtransfer.coord.flags import SLOPE
from lrtransfer.monitor import METRICS, NORMS, AlignmentMonitor
from lrtransfer.schedules import warmup_linear_decay

D_IN, D_OUT = 16, 8


class MLP(nn.Module):
    """input -> hidden -> (LayerNorm) -> readout, no biases; ``broken`` names the layer whose init ignores width.

    ``readout="zero"`` is μP's zero-initialised readout (mup's ``readout_zero_init``); ``"sp"`` keeps
    PyTorch's 1/√fan-in init. A broken layer's init std stays at the base width's 1/√64, so its
    output RMS grows as √m.
    """

    def __init__(self, width, broken=None, readout="zero", norm=False, base=64):
        super().__init__()
        self.inp = nn.Linear(D_IN, width, bias=False)
        self.act1 = nn.ReLU()
        self.hid = nn.Linear(width, width, bias=False)
        self.norm = nn.LayerNorm(width) if norm else nn.Identity()
        self.act2 = nn.ReLU()
        self.out = nn.Linear(width, D_OUT, bias=False)
        if readout == "zero":
            nn.init.zeros_(self.out.weight)
        if broken is not None:
            nn.init.normal_(getattr(self, broken).weight, std=1 / math.sqrt(base))

    def forward(self, x):
        return self.out(self.act2(self.norm(self.hid(self.act1(self.inp(x))))))


def data(batch=32, steps=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, batch, D_IN, generator=g)
    teacher = torch.randn(D_IN, D_OUT, generator=g)
    return lambda t: (x[t], torch.tanh(x[t] @ teacher))


def check(build=MLP, widths=(64, 128, 256), steps=3, every=1, **kw):
    kw = {"lr": 1e-2, "weight_decay": 0.1, "batches": data(), "loss": F.mse_loss, **kw}
    return coord_check(build, list(widths), widths[0], steps=steps, every=every, **kw)


def test_frame_columns_rows_and_activations_against_a_direct_forward():
    batches = data(batch=8)
    cc = check(widths=(16, 32), steps=12, every=5, seed=[0, 1], batches=batches)
    f = cc.frame
    assert list(f.columns[:6]) == ["width", "width_mult", "seed", "step", "layer", "role"]
    assert {"module", "loss", "activation_rms", "activation_l1", "grad_norm", "lr", "weight_decay",
            "fan_in", "fan_out", *METRICS, *NORMS} <= set(f.columns)
    leaves = ["inp", "act1", "hid", "norm", "act2", "out"]
    assert len(f) == 2 * 2 * 5 * len(leaves)  # widths × seeds × steps {0, 1, 2, 5, 10} × leaf modules
    assert sorted(f.step.unique()) == [0, 1, 2, 5, 10]
    assert f.width_mult.tolist() == (f.width / 16).tolist()
    one = f[(f.width == 32) & (f.seed == 1) & (f.step == 5)].set_index("layer")
    assert one.role.to_dict() == {"inp": "input", "act1": "none", "hid": "hidden", "norm": "none", "act2": "none",
                                  "out": "output"}
    assert one.loc[["act1", "norm", "act2"], "alignment_ratio"].isna().all()  # no matrix, no Eq 4 metrics
    assert one.loc[["inp", "hid", "out"], "alignment_ratio"].notna().all()
    # step 0 activations are the init's forward on batch 0: compare with the model built by hand
    torch.manual_seed(1)
    model = MLP(32)
    x, _ = batches(0)
    with torch.no_grad():
        h = model.act1(model.inp(x))
        y = {"inp": model.inp(x), "act1": h, "hid": model.hid(h), "act2": model.act2(model.hid(h))}
    got = f[(f.width == 32) & (f.seed == 1) & (f.step == 0)].set_index("layer")
    for name, value in y.items():
        assert got.loc[name, "activation_rms"] == pytest.approx(value.double().square().mean().sqrt().item(), rel=1e-6)
        assert got.loc[name, "activation_l1"] == pytest.approx(value.double().abs().mean().item(), rel=1e-6)
    assert len(cc.flags) == len(leaves) and cc.flags.layer.tolist() == leaves
    assert len(cc.timescales) == 2 * 3  # widths × modules with parameters


def test_metrics_are_those_of_a_plain_adamw_loop_with_the_monitor():
    cc = check(widths=(16, 32), steps=6, every=5, batches=data(batch=8), seed=3)
    torch.manual_seed(3)
    model, base = MLP(32), MLP(16)
    groups = lrtransfer.param_groups(model, base, lr=1e-2, weight_decay=0.1)
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.95))
    monitor = AlignmentMonitor(model, every=1, sample=0.25)
    batches = data(batch=8)
    for step in range(6):
        x, y = batches(step)
        with monitor.step(step) if step in (0, 1, 2, 5) else contextlib.nullcontext():
            F.mse_loss(model(x), y).backward()
            opt.step()
            opt.zero_grad()
    plain = monitor.frame().set_index(["step", "layer"])
    got = cc.frame[cc.frame.width == 32].dropna(subset=["fan_in"]).set_index(["step", "layer"])
    assert got.index.tolist() == plain.index.tolist()
    np.testing.assert_allclose(got[list(METRICS)].to_numpy(), plain[list(METRICS)].to_numpy(), rtol=1e-6)


def test_a_mup_scaled_mlp_is_not_flagged_for_activation_growth():
    cc = check(MLP)
    flags = cc.flags.set_index("layer")
    assert set(flags.activation) <= {"stable", "n/a"}, flags[["activation", "activation_slope"]]
    assert flags.loc[["inp", "hid"], "activation_slope"].abs().max() < SLOPE
    assert "activation grows" not in cc.text() and "activation shrinks" not in cc.text()


@pytest.mark.parametrize("broken, norm", [("out", False), ("hid", True)])
def test_a_layer_whose_init_ignores_width_is_flagged_and_only_that_layer(broken, norm):
    cc = check(lambda w: MLP(w, broken=broken, norm=norm))
    flags = cc.flags.set_index("layer")
    assert flags.loc[broken, "activation"] == "grows"
    assert flags.loc[broken, "activation_slope"] > 0.4  # √m growth has slope 0.5
    assert (flags.drop(index=broken).activation.isin(["stable", "n/a"])).all(), flags.activation
    lines = [x for x in cc.text().splitlines() if "activation grows with width" in x]
    assert lines and all(x.startswith(f"{broken} (") for x in lines)
    assert "one seed:" in cc.text()  # a single seed is said to be a single seed


def test_alignment_ratio_at_step_0_follows_sqrt_m_where_eq5_holds():
    """Random init (α_W ≈ 1/√C) and a batch far below the fan-in (α_ΔW ≈ Θ(1), Eq 28): ratio gain ≈ √m."""
    cc = check(lambda w: MLP(w, readout="sp"), widths=(64, 512), steps=3, batches=data(batch=4), sample=1.0,
               seed=[0, 1, 2])
    f = cc.frame[(cc.frame.step == 0) & (cc.frame.layer == "hid")]
    direct = f.groupby("width").alignment_ratio.mean()
    gain = direct[512] / direct[64]
    row = cc.flags.set_index("layer").loc["hid"]
    assert row.alignment_ratio_gain_init == pytest.approx(gain, rel=1e-12)
    assert row.sqrt_m == pytest.approx(math.sqrt(8)) and row.alignment_step == 0
    assert gain == pytest.approx(math.sqrt(8), rel=0.2)
    assert row.weight_alignment_gain_init == pytest.approx(1 / math.sqrt(8), rel=0.2)  # α_W ≈ 1/√C
    assert row.update_alignment_gain_init == pytest.approx(1.0, rel=0.2)  # α_ΔW = Θ(1)
    assert row.sqrt_m_at_init
    assert "Eq 5 holds" in cc.text()


def test_a_zero_gradient_step_is_not_read_as_evidence_on_eq5():
    """Behind a zero-init readout the hidden layer gets no gradient at step 0: ΔW = -ηλW, ratio exactly 1."""
    cc = check(MLP, widths=(64, 256))
    f = cc.frame[(cc.frame.layer == "hid") & (cc.frame.step == 0)]
    assert (f.grad_norm == 0).all() and np.allclose(f.alignment_ratio, 1.0)
    assert cc.flags.set_index("layer").loc["hid", "alignment_step"] == 1


@pytest.mark.parametrize("wd_scaling", ["independent", "standard"])
def test_timescales_are_2_lambda_sum_of_the_lrs_actually_used(wd_scaling):
    schedule = lambda t: warmup_linear_decay(t, total=40, warmup=0.25)  # noqa: E731
    cc = check(widths=(16, 64), steps=40, every=1, planned_steps=40, schedule=schedule, wd_scaling=wd_scaling,
               batches=data(batch=8))
    ts = cc.timescales.set_index(["width", "layer"]).timescales
    mult = np.array([schedule(t) for t in range(40)])
    for width, ref, mult_ref in [(64, MLP(16), None), (16, None, 1.0)]:
        groups = lrtransfer.param_groups(MLP(width), ref, width_mult=mult_ref, lr=1e-2, weight_decay=0.1,
                                         wd_scaling=wd_scaling)
        for g in groups:
            layer = g["param_names"][0].rpartition(".")[0]
            assert ts[(width, layer)] == pytest.approx(2 * g["weight_decay"] * np.sum(g["lr"] * mult), rel=1e-12)
    used = cc.frame.groupby(["width", "layer"]).agg(lr=("lr", "sum"), wd=("weight_decay", "first")).dropna()
    np.testing.assert_allclose(ts[used.index], 2 * used.wd * used.lr, rtol=1e-12)  # the optimizer's own LRs
    hidden = cc.flags.set_index("layer").loc["hid"]
    m = 4  # Eq 7 (standard): η·λ and so the timescales shrink as 1/m; Eq 8 (independent): unchanged
    expected = hidden.timescales_narrow / (m if wd_scaling == "standard" else 1)
    assert hidden.timescales_wide == pytest.approx(expected, rel=1e-12)


def test_a_planned_run_longer_than_the_check_counts_its_own_steps():
    cc = check(widths=(16, 32), steps=5, planned_steps=1000, batches=data(batch=8))
    hid = cc.timescales.set_index(["width", "layer"]).loc[(32, "hid")]
    assert hid.timescales == pytest.approx(2 * hid.lr * hid.weight_decay * 1000)
    assert "the planned 1000 steps span 2 weight-decay timescales" in cc.text()


def test_base_width_roles_are_read_off_a_wider_width():
    """An input Linear beside an Embedding: width_mult mode alone would call it hidden at the base width."""

    class WithEmbedding(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.pos = nn.Embedding(4, width)
            self.proj = nn.Linear(D_IN, width)
            self.out = nn.Linear(width, D_OUT)

        def forward(self, x):
            return self.out(self.proj(x) + self.pos.weight[0])

    cc = check(WithEmbedding, widths=(16, 32), batches=data(batch=8))
    roles = cc.frame.groupby(["layer", "width"]).role.first().unstack()
    assert roles.loc["proj"].tolist() == ["input", "input"] and roles.loc["out"].tolist() == ["output", "output"]
    base = cc.frame[(cc.frame.width == 16) & (cc.frame.layer == "proj")]
    assert (base.lr == 1e-2).all()  # input LR is not divided by m


def test_a_tied_readout_runs_and_reports_its_weight_once():
    class Tied(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.emb = nn.Embedding(D_OUT, width)
            self.hid = nn.Linear(width, width)
            self.head = nn.Linear(width, D_OUT, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, tokens):
            return self.head(torch.relu(self.hid(self.emb(tokens))))

    tokens = torch.randint(0, D_OUT, (4, 8), generator=torch.Generator().manual_seed(0))
    cc = check(Tied, widths=(16, 32), batches=(tokens, tokens.roll(1, dims=1)),
               loss=lambda out, y: F.cross_entropy(out.flatten(0, 1), y.flatten()))
    roles = cc.frame.groupby("layer").role.first()
    assert roles.to_dict() == {"emb": "input", "hid": "hidden", "head": "none"}
    assert set(cc.timescales.layer) == {"emb", "hid"}


def test_a_diverged_width_is_reported_and_its_later_steps_dropped():
    good = data(batch=8)

    def batches(step):
        x, y = good(step)
        return (x * math.nan, y) if step == 4 else (x, y)

    cc = check(widths=(16, 32), steps=8, every=1, batches=batches)
    assert cc.settings["diverged"] == {(16, 0): 4, (32, 0): 4}
    assert cc.frame.step.max() == 3
    assert "width 32, seed 0 diverged at step 4" in cc.text()


def test_plot_writes_a_figure_and_its_numbers(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    cc = check(lambda w: MLP(w, readout="sp"), widths=(16, 32), steps=12, every=5, batches=data(batch=8))
    path = cc.plot(tmp_path / "coord.png")
    assert path.stat().st_size > 10_000 and path.with_suffix(".csv").exists()


@pytest.mark.parametrize("kw, arg", [
    (dict(widths=[32, 16]), "widths"),
    (dict(widths=[16, 16, 32]), "widths"),
    (dict(widths=[8, 16]), "widths"),
    (dict(widths=[16]), "widths"),
    (dict(steps=0), "steps"),
    (dict(every=0), "every"),
    (dict(planned_steps=0), "planned_steps"),
    (dict(base_width=0), "base_width"),
    (dict(seed=[1, 1]), "seed"),
    (dict(schedule=[1.0, 1.0]), "schedule"),
    (dict(batches=[(torch.zeros(2, D_IN), torch.zeros(2, D_OUT))]), "batches"),
    (dict(build=lambda w: "not a model"), "build"),
    (dict(loss="mse"), "loss"),
    (dict(optimizer="sgd"), "optimizer"),
    (dict(lr=-1.0), "lr"),
    (dict(wd_scaling="indep"), "wd_scaling"),
])
def test_bad_input_raises_one_value_error_naming_the_argument(kw, arg):
    args = {**dict(build=MLP, widths=[16, 32], base_width=16, batches=data(batch=8), loss=F.mse_loss, lr=1e-2,
                   weight_decay=0.1, steps=3), **kw}
    with pytest.raises(ValueError, match=f"^{arg}: "):
        coord_check(**args)


def test_check_of_a_sweep_spec_and_its_cli(tmp_path):
    import subprocess
    import sys

    from lrtransfer.coord import coord_check_spec

    spec = {"name": "tiny", "base": {"preset": "lm-tiny", "overrides": {"run.steps": 40}}, "widths": [1, 2],
            "lrs": [1e-2], "rules": ["standard", "independent"]}
    cc = coord_check_spec(spec, steps=6, every=3)
    assert sorted(cc.frame["width"].unique()) == [32, 64] and cc.settings["wd_scaling"] == "independent"
    assert cc.settings["planned_steps"] == 40 and "weight-decay timescales" in cc.text()
    with pytest.raises(ValueError, match="arm: 'none' is not one of standard|independent"):
        coord_check_spec(spec, arm="none")
    (tmp_path / "spec.yaml").write_text(
        "base: {objective: 'math:sqrt', base_width: 8}\nlrs: [0.01]\nwidths: [1, 2]\n")
    run = subprocess.run([sys.executable, "-m", "lrtransfer.cli", "check", str(tmp_path / "spec.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "has no model builder here" in run.stderr and "Traceback" not in run.stderr
