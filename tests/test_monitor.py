"""AlignmentMonitor: every metric of Eq 2/4 against a direct computation, hooks, sampling, files."""

import copy
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrtransfer.monitor import METRICS, NORMS, AlignmentMonitor, read_records, register_layer_type, sample_size


class Tiny(nn.Module):
    """A Conv2d then a Linear: the two layer types the monitor knows."""

    def __init__(self, **conv):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, **conv)
        self.fc = nn.Linear(4 * self._side() ** 2, 5)

    def _side(self) -> int:
        with torch.no_grad():
            return self.conv(torch.zeros(1, 3, 8, 8)).shape[-1]

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def train_step(model, opt, x):
    model(x).square().mean().backward()
    opt.step()
    opt.zero_grad()


def run(model, steps=1, batch=8, lr=1e-2, **kw):
    torch.manual_seed(1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    monitor = AlignmentMonitor(model, **kw)
    for step in range(steps):
        with monitor.step(step):
            train_step(model, opt, torch.randn(batch, 3, 8, 8))
    return monitor.frame()


def hooks(model):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def direct(module, x, w0, w1, as_rows):
    """The norms computed the obvious way, in float64, from the layer's own forward."""
    x, w0, w1 = x.double(), w0.double(), w1.double()
    out = (lambda w: module._conv_forward(x, w, None)) if isinstance(module, nn.Conv2d) else (lambda w: x @ w.T)
    y, y1 = out(w0), out(w1)
    return {"weight_norm": w0.norm(), "update_norm": (w1 - w0).norm(), "input_norm": as_rows(x).norm(),
            "output_norm": y.norm(), "output_change_norm": (y1 - y).norm()}


CONVS = [dict(padding=1), dict(stride=2, dilation=2), dict(padding="same", padding_mode="reflect")]


@pytest.mark.parametrize("conv", CONVS, ids=["pad1", "stride2-dil2", "same-reflect"])
def test_every_metric_matches_a_direct_computation(conv):
    torch.manual_seed(0)
    model, batch, sample = Tiny(**conv), 8, 0.5
    before = copy.deepcopy(model)
    df = run(model, batch=batch, sample=sample).set_index("layer")
    torch.manual_seed(1)
    xk = torch.randn(batch, 3, 8, 8)[:4]  # the batch `run` drew; first ⌈0.5·8⌉ samples
    k = before.conv.kernel_size
    conv_rows = lambda x: F.unfold(F.pad(x, before.conv._reversed_padding_repeated_twice,  # noqa: E731
                                         mode=conv.get("padding_mode", "constant")),
                                   k, dilation=before.conv.dilation, stride=before.conv.stride)
    expect = {
        "conv": direct(before.conv, xk, before.conv.weight, model.conv.weight, conv_rows),
        "fc": direct(before.fc, before.conv(xk).flatten(1).detach(), before.fc.weight, model.fc.weight, lambda x: x),
    }
    for layer, n in expect.items():
        row = df.loc[layer]
        for name in NORMS:
            assert row[name] == pytest.approx(n[name].item(), rel=1e-5), (layer, name)
        x_w, x_dw = n["input_norm"] * n["weight_norm"], n["input_norm"] * n["update_norm"]
        want = {"weight_alignment": n["output_norm"] / x_w, "update_alignment": n["output_change_norm"] / x_dw,
                "relative_update": n["update_norm"] / n["weight_norm"],
                "relative_repr_change": n["output_change_norm"] / n["output_norm"]}
        want["alignment_ratio"] = want["update_alignment"] / want["weight_alignment"]
        for name in METRICS:
            assert row[name] == pytest.approx(want[name].item(), rel=1e-5), (layer, name)
    assert df.loc["conv", "fan_in"] == 3 * 9 and df.loc["conv", "fan_out"] == 4
    assert df.loc["fc", "fan_in"] == model.fc.in_features and df.loc["fc", "fan_out"] == 5


def test_update_includes_weight_decay():
    """With lr·wd > 0 and no gradient, ΔW = -lr·wd·W exactly: relative_update = lr·wd."""
    model = nn.Linear(4, 3, bias=False)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    monitor = AlignmentMonitor(model, every=1)
    with monitor.step(0):
        model(torch.randn(2, 4))
        model.weight.grad = torch.zeros_like(model.weight)
        opt.step()
    assert monitor.frame()["relative_update"].item() == pytest.approx(0.05, rel=1e-6)


def test_eq4_holds_in_the_records():
    torch.manual_seed(0)
    df = run(Tiny(padding=1), steps=6, every=2)
    assert len(df) == 3 * 2
    rhs = df["alignment_ratio"] * df["relative_update"]
    assert (df["relative_repr_change"] - rhs).abs().max() <= 1e-12 * df["relative_repr_change"].abs().max()


def test_hooks_exist_only_inside_measured_steps():
    model = Tiny(padding=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    monitor = AlignmentMonitor(model, every=3)
    seen = {}
    for step in range(4):
        with monitor.step(step):
            seen[step] = hooks(model)
            train_step(model, opt, torch.randn(2, 3, 8, 8))
        assert hooks(model) == 0
    assert seen == {0: 2, 1: 0, 2: 0, 3: 2}


def test_exception_inside_a_measured_step_removes_hooks_and_records_nothing():
    model = Tiny(padding=1)
    monitor = AlignmentMonitor(model, every=1)
    with pytest.raises(RuntimeError, match="boom"):
        with monitor.step(0):
            model(torch.randn(2, 3, 8, 8))
            raise RuntimeError("boom")
    assert hooks(model) == 0 and monitor.frame().empty
    run_again = torch.randn(3, 3, 8, 8)
    with monitor.step(1):
        model(run_again)
    assert monitor.frame().set_index("layer").loc["conv", "input_norm"] > 0  # no stale input from step 0


@pytest.mark.parametrize("batch, fraction, rows", [(8, 1 / 4, 2), (8, 1.0, 8), (3, 1 / 64, 1), (30, 0.1, 3),
                                                   (64, 1 / 64, 1), (65, 1 / 64, 2)])
def test_sample_size(batch, fraction, rows):
    assert sample_size(batch, fraction) == rows


def test_sample_takes_the_first_rows_of_the_batch():
    model = nn.Linear(6, 3)
    x = torch.randn(8, 5, 6)
    monitor = AlignmentMonitor(model, every=1, sample=1 / 4)
    with monitor.step(0):
        model(x)
        model(torch.randn(8, 5, 6))  # a second micro-batch is not measured
    assert monitor.frame()["input_norm"].item() == pytest.approx(x[:2].norm().item(), rel=1e-6)


def test_zero_update_records_nan_alignment_without_crashing():
    torch.manual_seed(0)
    model = Tiny(padding=1)
    model.conv.requires_grad_(False)  # frozen: ΔW = 0
    row = run(model, every=1).set_index("layer").loc["conv"]
    assert math.isnan(row["update_alignment"]) and math.isnan(row["alignment_ratio"])
    assert row["relative_update"] == 0 and row["relative_repr_change"] == 0
    assert row["weight_alignment"] > 0


def test_records_stream_to_the_file_and_resume_appends(tmp_path):
    path = tmp_path / "run" / "alignment.jsonl"
    model = Tiny(padding=1)
    model.conv.requires_grad_(False)  # NaNs must survive the round trip
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    monitor = AlignmentMonitor(model, every=2, path=path)
    for step in range(4):
        with monitor.step(step):
            train_step(model, opt, torch.randn(2, 3, 8, 8))
        assert len(path.read_text().splitlines()) == 2 * (step // 2 + 1)
    assert AlignmentMonitor.read(path).equals(monitor.frame())
    resumed = AlignmentMonitor(model, every=2, path=path)
    with resumed.step(4):
        train_step(model, opt, torch.randn(2, 3, 8, 8))
    assert read_records(path)["step"].tolist() == [0, 0, 2, 2, 4, 4]


def test_read_skips_a_line_torn_by_a_crash(tmp_path):
    path = tmp_path / "a.jsonl"
    run(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)), every=1, path=path)
    path.write_text(path.read_text() + '{"step": 1, "lay')
    assert len(read_records(path)) == 1


def test_roles_by_parameter_or_module_name():
    model = Tiny(padding=1)
    df = run(model, every=1, roles={"conv.weight": "hidden", "fc": "output"}).set_index("layer")
    assert df["role"].to_dict() == {"conv": "hidden", "fc": "output"}
    assert run(Tiny(padding=1), every=1)["role"].unique().tolist() == ["unknown"]


@pytest.mark.parametrize("layers, chosen", [(None, ["conv", "fc"]), (["fc"], ["fc"]), (["c*"], ["conv"]),
                                            ("*", ["conv", "fc"])])
def test_layers_filter(layers, chosen):
    monitor = AlignmentMonitor(Tiny(padding=1), layers=layers)
    assert monitor.layers == chosen


def test_layer_pattern_matching_nothing_raises_naming_it():
    with pytest.raises(ValueError, match=r"layers: 'blocks\.\*' matches no measurable module \(nn.Linear"):
        AlignmentMonitor(Tiny(padding=1), layers=["fc", "blocks.*"])


def test_grouped_conv_is_skipped_with_a_warning():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.LazyLinear(2))
    with pytest.warns(UserWarning, match=r"grouped convolutions.*'0'"):
        assert AlignmentMonitor(model).layers == ["2"]
    with pytest.raises(ValueError, match="layers: nothing to measure"), pytest.warns(UserWarning):
        AlignmentMonitor(model, layers=["0"])


def test_layer_not_called_in_the_step_has_no_record():
    model = nn.ModuleDict({"used": nn.Linear(3, 3), "unused": nn.Linear(3, 3)})
    monitor = AlignmentMonitor(model, every=1)
    with monitor.step(0):
        model["used"](torch.randn(2, 3))
    assert monitor.frame()["layer"].tolist() == ["used"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(every=0), "every: must be an int >= 1, got 0"),
    (dict(every=2.5), "every: must be an int >= 1"),
    (dict(sample=0), r"sample: must be a fraction in \(0, 1\], got 0"),
    (dict(sample=1.5), "sample: must be a fraction"),
    (dict(sample=-0.1), "sample: must be a fraction"),
])
def test_bad_arguments_raise_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AlignmentMonitor(Tiny(padding=1), **kwargs)


def test_compiled_model_needs_hook_guards():
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 4), nn.ReLU(), nn.Linear(4, 2))
    twin, compiled = copy.deepcopy(model), torch.compile(model, backend="eager")
    with torch._dynamo.config.patch(skip_nnmodule_hook_guards=True):
        with pytest.raises(ValueError, match="model: is torch.compile'd; set .*skip_nnmodule_hook_guards"):
            AlignmentMonitor(compiled)
    with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False):
        df = run(compiled, steps=4, batch=4, every=2)  # hooks come and go; dynamo keeps two graphs
        torch._dynamo.reset()
    eager = run(twin, steps=4, batch=4, every=2)
    assert df["step"].tolist() == [0, 0, 2, 2] and df["layer"].tolist() == ["1", "3"] * 2
    pd.testing.assert_frame_equal(df, eager, rtol=1e-5)


def test_measured_step_without_a_forward_warns():
    monitor = AlignmentMonitor(nn.Linear(3, 3), every=1)
    with pytest.warns(UserWarning, match="step 0: no monitored layer ran a forward"), monitor.step(0):
        pass
    assert monitor.frame().empty


# ---------------------------------------------------------------- layer types, no-grad forwards, batch_dim

@pytest.mark.parametrize("conv", [dict(padding=1), dict(stride=2, dilation=2, padding=2, padding_mode="reflect")],
                         ids=["pad1", "stride2-dil2-reflect"])
def test_conv1d_matches_a_direct_computation(conv):
    torch.manual_seed(0)
    model = nn.Conv1d(3, 4, 3, **conv)
    before = copy.deepcopy(model)
    x = torch.randn(6, 3, 11)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    monitor = AlignmentMonitor(model, every=1, sample=0.5)
    with monitor.step(0):
        model(x).square().mean().backward()
        opt.step()
    row = monitor.frame().iloc[0]
    xk = x[:3].double()
    # im2col by hand: every output position's receptive field, from the layer's own padding.
    padded = F.pad(xk, (conv["padding"],) * 2, mode=conv.get("padding_mode", "constant").replace("zeros", "constant"))
    s, d = conv.get("stride", 1), conv.get("dilation", 1)
    starts = range(0, padded.shape[-1] - d * 2, s)
    patches = torch.stack([padded[:, :, i: i + 2 * d + 1: d].flatten(1) for i in starts], dim=1).flatten(0, 1)
    w0, w1 = before.weight.double().flatten(1), model.weight.detach().double().flatten(1)
    y = before._conv_forward(xk, before.weight.double(), None)
    assert patches.shape[0] == y.shape[0] * y.shape[2]
    torch.testing.assert_close((patches @ w0.T).norm(), y.norm())  # the rows really are Eq 1's X
    want = {"weight_norm": w0.norm(), "update_norm": (w1 - w0).norm(), "input_norm": patches.norm(),
            "output_norm": y.norm(), "output_change_norm": (patches @ (w1 - w0).T).norm()}
    for name, value in want.items():
        assert row[name] == pytest.approx(value.item(), rel=1e-5), name
    assert (row["fan_in"], row["fan_out"]) == (3 * 3, 4)


class _Transposed(nn.Module):
    """y = x @ weight + bias with weight (in, out): a type the monitor does not know by default."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) / n_in**0.5)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class TransposedLinear(_Transposed):
    """Registered by its class."""


class NamedTransposedLinear(_Transposed):
    """Registered by its "module.QualName" instead of the class."""


def _train_layer(layer: nn.Module, x: torch.Tensor, steps: int = 2) -> pd.DataFrame:
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-2, weight_decay=0.1)
    monitor = AlignmentMonitor(layer, every=1, sample=0.5)
    for step in range(steps):
        with monitor.step(step):
            layer(x).sin().sum().backward()
            opt.step()
            opt.zero_grad()
    return monitor.frame()


@pytest.mark.parametrize("cls", [TransposedLinear, NamedTransposedLinear])
def test_a_registered_layer_type_measures_like_the_equivalent_linear(cls):
    torch.manual_seed(0)
    custom, linear = cls(6, 5), nn.Linear(6, 5)
    with pytest.raises(ValueError, match="layers: nothing to measure"):
        AlignmentMonitor(custom)
    key = cls if cls is TransposedLinear else f"{cls.__module__}.{cls.__qualname__}"
    register_layer_type(key, 2, lambda module, x: x.reshape(-1, x.shape[-1]), lambda w: w.T)
    with torch.no_grad():
        linear.weight.copy_(custom.weight.T)
        linear.bias.copy_(custom.bias)
    x = torch.randn(8, 3, 6)
    got, want = _train_layer(custom, x), _train_layer(linear, x)
    assert got[["fan_in", "fan_out"]].drop_duplicates().values.tolist() == [[6, 5]]
    pd.testing.assert_frame_equal(got, want, rtol=1e-6)


@pytest.mark.parametrize("kwargs, exception, message", [
    (dict(cls=nn.ReLU(), batched_ndim=2), TypeError, "cls: expected an nn.Module subclass"),
    (dict(cls=TransposedLinear, batched_ndim=0), ValueError, "batched_ndim: must be an int >= 1"),
    (dict(cls=TransposedLinear, batched_ndim=2, rows_fn="rows"), TypeError, "rows_fn: expected a callable"),
])
def test_register_layer_type_bad_input_raises_naming_the_argument(kwargs, exception, message):
    with pytest.raises(exception, match=message):
        register_layer_type(**{"rows_fn": lambda m, x: x, **kwargs})


@pytest.mark.parametrize("no_grad", [torch.no_grad, torch.inference_mode])
def test_forwards_without_grad_inside_a_step_are_ignored(no_grad):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    twin = copy.deepcopy(model)
    x, x_eval = torch.randn(8, 6), 10 * torch.randn(8, 6)
    frames = []
    for net, evaluate in ((model, True), (twin, False)):
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
        monitor = AlignmentMonitor(net, every=1, sample=0.5)
        with monitor.step(0):
            if evaluate:
                with no_grad():
                    net(x_eval)  # e.g. a logging forward before the real one: not the step's X
            net(x).square().mean().backward()
            opt.step()
        frames.append(monitor.frame())
    assert frames[0].loc[0, "input_norm"] == pytest.approx(x[:4].norm().item(), rel=1e-6)
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_batch_dim_1_on_seq_first_input_equals_batch_dim_0():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    twin = copy.deepcopy(model)
    x = torch.randn(8, 5, 6)  # [B, T, d]
    frames = []
    for net, inputs, batch_dim in ((model, x, 0), (twin, x.transpose(0, 1), 1)):  # seq-first: [T, B, d]
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
        monitor = AlignmentMonitor(net, every=1, sample=0.25, batch_dim=batch_dim)
        for step in range(2):
            with monitor.step(step):
                net(inputs).square().mean().backward()
                opt.step()
                opt.zero_grad()
        frames.append(monitor.frame())
    assert frames[0].loc[0, "input_norm"] == pytest.approx(x[:2].norm().item(), rel=1e-6)
    pd.testing.assert_frame_equal(frames[0], frames[1], rtol=1e-6)
    with pytest.raises(ValueError, match="batch_dim: must be an int >= 0, got -1"):
        AlignmentMonitor(model, batch_dim=-1)


def test_batch_dim_1_samples_a_pooled_2d_input_along_dim_0():
    model = nn.Linear(6, 3)
    x = torch.randn(8, 6)
    monitor = AlignmentMonitor(model, every=1, sample=0.25, batch_dim=1)
    with monitor.step(0):
        model(x)
    assert monitor.frame()["input_norm"].item() == pytest.approx(x[:2].norm().item(), rel=1e-6)


def test_a_tied_readout_gets_the_role_of_its_first_name():
    model = nn.ModuleDict({"embed": nn.Embedding(5, 4), "readout": nn.Linear(4, 5, bias=False)})
    model["readout"].weight = model["embed"].weight
    monitor = AlignmentMonitor(model, every=1, roles={"embed.weight": "input"})
    with monitor.step(0):
        model["readout"](torch.randn(2, 4))
    assert monitor.frame()[["layer", "role"]].values.tolist() == [["readout", "input"]]
