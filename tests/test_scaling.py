"""Width-aware LR / weight-decay scaling (`lrtransfer.scaling`, `lrtransfer.roles`): tables of behaviour."""

from __future__ import annotations

import copy
import io
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrtransfer.monitor import register_layer_type
from lrtransfer.scaling import ParamInfo, describe_groups, param_groups, parameter_roles, split_groups

LR, WD, BASE = 1e-2, 0.1, 8
HEAD, VOCAB = 4, 11


class ToyMLP(nn.Module):
    def __init__(self, width: int, hidden_bias: bool = True):
        super().__init__()
        self.inp = nn.Linear(6, width)
        self.norm = nn.LayerNorm(width)
        self.hidden = nn.Linear(width, width, bias=hidden_bias)
        self.out = nn.Linear(width, 3)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(self.norm(self.inp(x)))))


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.attn_norm, self.mlp_norm = nn.RMSNorm(d), nn.RMSNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.up, self.down = nn.Linear(d, 3 * d, bias=False), nn.Linear(3 * d, d, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        h = self.attn_norm(x)
        q, k, v = (f(h).view(b, t, d // HEAD, HEAD).transpose(1, 2) for f in (self.q, self.k, self.v))
        x = x + self.o(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.mlp_norm(x))))


class ToyTransformer(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(2))
        self.norm = nn.RMSNorm(width)
        self.readout = nn.Linear(width, VOCAB, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.readout(self.norm(x))


class ToyConv(nn.Module):
    def __init__(self, width: int, kernel: int = 3):
        super().__init__()
        self.conv_in = nn.Conv2d(3, width, kernel, padding=kernel // 2)
        self.conv_hidden = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, 5)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv_hidden(torch.relu(self.conv_in(x)))))
        return self.fc(x.mean(dim=(2, 3)))


class Raw(nn.Module):
    def __init__(self, *shape: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(shape))


BLOCK_ROLES = {"attn_norm.weight": "gain", "mlp_norm.weight": "gain", "q.weight": "hidden", "k.weight": "hidden",
               "v.weight": "hidden", "o.weight": "hidden", "up.weight": "hidden", "down.weight": "hidden"}
ROLES = {
    "mlp": {"inp.weight": "input", "inp.bias": "bias", "norm.weight": "gain", "norm.bias": "bias",
            "hidden.weight": "hidden", "hidden.bias": "bias", "out.weight": "output", "out.bias": "bias"},
    "transformer": {"embed.weight": "input", "norm.weight": "gain", "readout.weight": "output",
                    **{f"blocks.{i}.{n}": r for i in range(2) for n, r in BLOCK_ROLES.items()}},
    "conv": {"conv_in.weight": "input", "conv_in.bias": "bias", "conv_hidden.weight": "hidden",
             "bn.weight": "gain", "bn.bias": "bias", "fc.weight": "output", "fc.bias": "bias"},
}
MODELS = {"mlp": ToyMLP, "transformer": ToyTransformer, "conv": ToyConv}

# (lr_scaling, wd_scaling, m) -> (lr ×, weight_decay ×) of the hidden and output layers (Eq. 6-8, B.1).
SCALED = {
    ("mup", "independent", 2): (1 / 2, 2), ("mup", "independent", 4): (1 / 4, 4),
    ("mup", "standard", 2): (1 / 2, 1), ("mup", "standard", 4): (1 / 4, 1),
    ("mup", "none", 2): (1 / 2, 0), ("mup", "none", 4): (1 / 4, 0),
    ("sqrt", "independent", 2): (2**-0.5, 2**0.5), ("sqrt", "independent", 4): (1 / 2, 2),
    ("sqrt", "standard", 2): (2**-0.5, 1), ("sqrt", "standard", 4): (1 / 2, 1),
    ("sqrt", "none", 2): (2**-0.5, 0), ("sqrt", "none", 4): (1 / 2, 0),
    ("none", "independent", 2): (1, 1), ("none", "independent", 4): (1, 1),
    ("none", "standard", 2): (1, 1), ("none", "standard", 4): (1, 1),
    ("none", "none", 2): (1, 0), ("none", "none", 4): (1, 0),
}
# wd_scaling -> weight_decay × of the unscaled roles (LR × is always 1), default no_decay=("gain",).
UNSCALED = {
    "independent": {"input": 1, "gain": 0, "bias": 1},
    "standard": {"input": 1, "gain": 0, "bias": 1},
    "none": {"input": 0, "gain": 0, "bias": 0},
}


def expected(role: str, lr_scaling: str, wd_scaling: str, m: int) -> tuple[float, float]:
    if role in ("hidden", "output"):
        return SCALED[(lr_scaling, wd_scaling, m)]
    return 1, UNSCALED[wd_scaling][role]


def train(model: nn.Module, opts: list[torch.optim.Optimizer], steps: int = 3, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        if isinstance(model, ToyTransformer):
            x = torch.randint(0, VOCAB, (2, 5), generator=gen)
            loss = F.cross_entropy(model(x).flatten(0, 1), x.roll(-1, 1).flatten())
        else:
            shape = (4, 3, 5, 5) if isinstance(model, ToyConv) else (4, 6)
            x = torch.randn(shape, generator=gen)
            loss = model(x).square().mean()
        loss.backward()
        for opt in opts:
            opt.step()
            opt.zero_grad()


@pytest.mark.parametrize("reference", ["base_model", "width_mult"])
@pytest.mark.parametrize("kind", ["mlp", "transformer"])
@pytest.mark.parametrize("lr_scaling, wd_scaling, m", list(SCALED))
def test_lr_and_wd_of_every_role_under_every_rule(kind, lr_scaling, wd_scaling, m, reference):
    model = MODELS[kind](BASE * m)
    ref = {"base_model": MODELS[kind](BASE)} if reference == "base_model" else {"width_mult": m}
    groups = param_groups(model, **ref, lr=LR, weight_decay=WD, lr_scaling=lr_scaling, wd_scaling=wd_scaling)
    assert sorted(n for g in groups for n in g["param_names"]) == sorted(ROLES[kind])
    for g in groups:
        lr_x, wd_x = expected(g["role"], lr_scaling, wd_scaling, m)
        assert {ROLES[kind][n] for n in g["param_names"]} == {g["role"]}
        assert (g["lr"], g["weight_decay"]) == (pytest.approx(LR * lr_x), pytest.approx(WD * wd_x))
        assert (g["lr_scale"], g["wd_scale"]) == (pytest.approx(lr_x), pytest.approx(wd_x))
        assert all(p is model.get_parameter(n) for p, n in zip(g["params"], g["param_names"], strict=True))


@pytest.mark.parametrize("no_decay, fixed_lr, role_lr, role_wd", [
    # unscaled roles: (input, gain, bias) at m = 4, "mup" + "independent"
    (("gain",), None, (LR, LR, LR), (WD, 0, WD)),
    ((), None, (LR, LR, LR), (WD, WD, WD)),
    (("gain", "bias"), 1.6e-2, (1.6e-2, 1.6e-2, 1.6e-2), (WD, 0, 0)),
    (("hidden",), 1.6e-2, (1.6e-2, 1.6e-2, 1.6e-2), (WD, WD, WD)),
])
def test_fixed_lr_and_no_decay(no_decay, fixed_lr, role_lr, role_wd):
    groups = param_groups(ToyMLP(32), width_mult=4, lr=LR, weight_decay=WD, fixed_lr=fixed_lr, no_decay=no_decay)
    by_role = {g["role"]: g for g in groups}
    assert [by_role[r]["lr"] for r in ("input", "gain", "bias")] == pytest.approx(role_lr)
    assert [by_role[r]["weight_decay"] for r in ("input", "gain", "bias")] == pytest.approx(role_wd)
    assert by_role["input"]["lr_scale"] == pytest.approx(role_lr[0] / LR)
    assert by_role["hidden"]["lr"] == pytest.approx(LR / 4)
    assert by_role["hidden"]["weight_decay"] == (0 if "hidden" in no_decay else pytest.approx(4 * WD))


@pytest.mark.parametrize("no_decay", [(), ("gain",)])
def test_width_mult_one_steps_like_plain_adamw(no_decay):
    torch.manual_seed(0)
    model = ToyTransformer(BASE)
    reference = copy.deepcopy(model)
    ours = torch.optim.AdamW(param_groups(model, width_mult=1, lr=LR, weight_decay=WD, no_decay=no_decay))
    gains = [p for n, p in reference.named_parameters() if n.endswith("norm.weight")]
    rest = [p for n, p in reference.named_parameters() if not n.endswith("norm.weight")]
    gain_wd = 0.0 if no_decay else WD  # the paper decays every parameter except the gains
    plain = torch.optim.AdamW([{"params": rest}, {"params": gains, "weight_decay": gain_wd}], lr=LR, weight_decay=WD)
    train(model, [ours], steps=4)
    train(reference, [plain], steps=4)
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_conv_fan_in_is_in_channels_times_kernel_area():
    infos = parameter_roles(ToyConv(16), ToyConv(BASE))
    assert infos["conv_in.weight"] == ParamInfo("conv_in.weight", "input", 2.0, 3 * 3 * 3, 16, (16, 3, 3, 3))
    assert infos["conv_hidden.weight"] == ParamInfo("conv_hidden.weight", "hidden", 2.0, 16 * 9, 16, (16, 16, 3, 3))
    assert infos["fc.weight"] == ParamInfo("fc.weight", "output", 2.0, 16, 5, (5, 16))
    assert (infos["bn.weight"].role, infos["fc.bias"].width_mult) == ("gain", 1.0)


@pytest.mark.parametrize("m", [1.5, 2, 4])
@pytest.mark.parametrize("kind", ["mlp", "transformer", "conv"])
def test_base_model_and_width_mult_inference_agree(kind, m):
    model = MODELS[kind](int(BASE * m))
    by_base = parameter_roles(model, MODELS[kind](BASE))
    assert {n: i.role for n, i in by_base.items()} == ROLES[kind]
    assert by_base == parameter_roles(model, width_mult=m)


def test_roles_overrides_first_match_wins():
    infos = parameter_roles(ToyMLP(32), width_mult=4, roles={"out.bias": "gain", "out.*": "hidden"})
    assert {n: infos[n].role for n in ("out.bias", "out.weight", "hidden.bias")} == {
        "out.bias": "gain", "out.weight": "hidden", "hidden.bias": "bias"}


def test_state_dict_round_trip_keeps_group_metadata():
    torch.manual_seed(0)
    model, base = ToyTransformer(4 * BASE), ToyTransformer(BASE)
    opt = torch.optim.AdamW(param_groups(model, base, lr=LR, weight_decay=WD), betas=(0.9, 0.95))
    train(model, [opt], steps=2)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer)  # weights_only: the metadata must be plain Python values
    # A fresh optimizer built with other rules: loading restores the saved rates *and* their reasons.
    fresh = torch.optim.AdamW(param_groups(model, base, lr=1.0, weight_decay=0.0, lr_scaling="none"))
    fresh.load_state_dict(saved)
    keys = ("role", "width_mult", "lr_scale", "wd_scale", "param_names", "lr", "weight_decay")
    assert [{k: g[k] for k in keys} for g in fresh.param_groups] == [{k: g[k] for k in keys} for g in opt.param_groups]
    assert {g["role"] for g in fresh.param_groups} == {"input", "hidden", "output", "gain"}
    for p in model.parameters():
        assert torch.equal(fresh.state[p]["exp_avg"], opt.state[p]["exp_avg"])


def _muon_and_adamw(groups):
    hidden, rest = split_groups(groups, roles=("hidden",))
    return [torch.optim.Muon(hidden), torch.optim.AdamW(rest)]


OPTIMIZERS = {
    "adamw": lambda groups: [torch.optim.AdamW(groups, betas=(0.9, 0.95))],
    "adam_decoupled": lambda groups: [torch.optim.Adam(groups, decoupled_weight_decay=True)],
    "sgd": lambda groups: [torch.optim.SGD(groups, momentum=0.9)],
    "muon+adamw": _muon_and_adamw,
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizers_construct_and_step(name):
    torch.manual_seed(0)
    model = ToyTransformer(2 * BASE)
    before = copy.deepcopy(model)
    opts = OPTIMIZERS[name](param_groups(model, width_mult=2, lr=LR, weight_decay=WD))
    train(model, opts, steps=2)
    hidden = next(g for opt in opts for g in opt.param_groups if g["role"] == "hidden")
    assert (hidden["lr"], hidden["weight_decay"]) == (pytest.approx(LR / 2), pytest.approx(2 * WD))
    for (n, p), q in zip(model.named_parameters(), before.parameters(), strict=True):
        assert torch.isfinite(p).all() and not torch.equal(p, q), n


def test_split_groups_selects_by_role():
    groups = param_groups(ToyMLP(32), width_mult=4, lr=LR, weight_decay=WD)
    selected, rest = split_groups(groups, roles=("hidden", "output"))
    assert [g["role"] for g in selected] == ["hidden", "output"]
    # The readout's bias has fan-out ratio 1, so it gets its own (role, width_mult) group.
    assert [(g["role"], g["width_mult"]) for g in rest] == [("input", 4), ("bias", 4), ("gain", 4), ("bias", 1)]


GOOD = dict(lr=LR, weight_decay=WD)
ERRORS = [
    # (model, base_model, keyword arguments, exception, message)
    (ToyMLP(16), ToyMLP(8), dict(width_mult=2), ValueError, "give exactly one of base_model or width_mult (got both)"),
    (ToyMLP(16), None, {}, ValueError, "give exactly one of base_model or width_mult (got neither)"),
    (ToyMLP(16), None, dict(width_mult=0), ValueError, "width_mult: must be a finite number > 0, got 0"),
    (ToyMLP(16), None, dict(width_mult=math.inf), ValueError, "width_mult: must be a finite number > 0"),
    (ToyMLP(16), None, dict(width_mult=2, lr_scaling="mupp"), ValueError,
     "lr_scaling: 'mupp' is not one of mup|sqrt|none"),
    (ToyMLP(16), None, dict(width_mult=2, wd_scaling="indep"), ValueError,
     "wd_scaling: 'indep' is not one of none|standard|independent"),
    (ToyMLP(16), None, dict(width_mult=2, lr=0), ValueError, "lr: must be a finite number > 0, got 0"),
    (ToyMLP(16), None, dict(width_mult=2, lr=-1e-3), ValueError, "lr: must be a finite number > 0"),
    (ToyMLP(16), None, dict(width_mult=2, lr="1e-2"), ValueError, "lr: must be a finite number > 0"),
    (ToyMLP(16), None, dict(width_mult=2, weight_decay=-0.1), ValueError, "weight_decay: must be a finite number >= 0"),
    (ToyMLP(16), None, dict(width_mult=2, fixed_lr=0.0), ValueError, "fixed_lr: must be a finite number > 0"),
    (ToyMLP(16), None, dict(width_mult=2, no_decay=("gains",)), ValueError,
     "no_decay: 'gains' is not one of input|hidden|output|gain|bias"),
    (ToyMLP(16), None, dict(width_mult=2, no_decay="gain"), TypeError, "no_decay: expected a sequence of roles"),
    (ToyMLP(16), None, dict(width_mult=2, roles={"*.nope": "hidden"}), ValueError,
     "roles: pattern '*.nope' matches no parameter of model"),
    (ToyMLP(16), None, dict(width_mult=2, roles={"hidden.*": "hiden"}), ValueError,
     "roles['hidden.*']: 'hiden' is not one of input|hidden|output|gain|bias"),
    (ToyMLP(16), None, dict(width_mult=2, roles=["hidden.*"]), TypeError, "roles: expected a mapping"),
    ("mlp", None, dict(width_mult=2), TypeError, "model: expected a torch.nn.Module"),
    (ToyMLP(16), "mlp", {}, TypeError, "base_model: expected a torch.nn.Module"),
    (nn.ReLU(), None, dict(width_mult=2), ValueError, "model: ReLU has no parameters"),
    (ToyMLP(16), ToyMLP(8, hidden_bias=False), {}, ValueError, "hidden.bias: base_model has no parameter of this name"),
    (ToyMLP(16, hidden_bias=False), ToyMLP(8), {}, ValueError,
     "base_model: has parameter 'hidden.bias' that model lacks"),
    (Raw(4, 4), Raw(4), {}, ValueError, "w: shape (4, 4) has a different ndim than base_model's (4,)"),
    (ToyConv(16, kernel=5), ToyConv(8), {}, ValueError,
     "conv_in.weight: kernel (5, 5) differs from base_model's (3, 3)"),
    (ToyMLP(8), ToyMLP(16), {}, ValueError, "inp.weight: shape (8, 6) is smaller than base_model's (16, 6)"),
    (ToyMLP(8), ToyMLP(8), {}, ValueError, "base_model: every parameter has the same shape as in model"),
    (Raw(2, 3, 4), None, dict(width_mult=2), ValueError, "w: cannot infer the role of a 3-D parameter of Raw"),
]


@pytest.mark.parametrize("model, base_model, kwargs, exception, message", ERRORS, ids=[e[4][:40] for e in ERRORS])
def test_bad_input_raises_naming_the_argument(model, base_model, kwargs, exception, message):
    with pytest.raises(exception, match=re.escape(message)):
        param_groups(model, base_model, **{**GOOD, **kwargs})


@pytest.mark.parametrize("groups, roles, exception, message", [
    ([{"params": [], "role": "hidden"}], ("hiden",), ValueError, "roles: 'hiden' is not one of"),
    ([{"params": [], "role": "hidden"}], ("output",), ValueError, "roles: no group has a role in ('output',)"),
    ([{"params": []}], ("hidden",), ValueError, "groups[0]: has no 'role'"),
    ([{"params": [], "role": "hidden"}], "hidden", TypeError, "roles: expected a sequence of roles"),
])
def test_split_groups_bad_input_raises(groups, roles, exception, message):
    with pytest.raises(exception, match=re.escape(message)):
        split_groups(groups, roles=roles)


def test_overridden_3d_parameter_is_accepted():
    assert parameter_roles(Raw(2, 3, 4), width_mult=2, roles={"w": "input"})["w"].role == "input"


# ---------------------------------------------------------------- role inference on custom models

class ProjectedInput(nn.Module):
    """An input projection of fixed fan-in next to a positional embedding (both feed the residual stream)."""

    def __init__(self, width: int):
        super().__init__()
        self.pos = nn.Embedding(5, width)
        self.proj = nn.Linear(6, width)
        self.block = Block(width)
        self.readout = nn.Linear(width, 3)

    def forward(self, x):
        return self.readout(self.block(self.proj(x) + self.pos.weight))


class TiedLM(nn.Module):
    """A transformer whose readout is the embedding's tensor (nanoGPT, GPT-2)."""

    def __init__(self, width: int, readout_first: bool = False):
        super().__init__()
        if readout_first:  # registration order must not decide the tied tensor's role
            self.readout = nn.Linear(width, VOCAB, bias=False)
        self.embed = nn.Embedding(VOCAB, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(2))
        self.norm = nn.RMSNorm(width)
        if not readout_first:
            self.readout = nn.Linear(width, VOCAB, bias=False)
        self.readout.weight = self.embed.weight

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.readout(self.norm(x))


TIED = {"embed.weight": "input", "norm.weight": "gain", **{f"blocks.{i}.{n}": r for i in range(2)
                                                           for n, r in BLOCK_ROLES.items()}}
CUSTOM = {
    "projected": (ProjectedInput, {"pos.weight": "input", "proj.weight": "input", "proj.bias": "bias",
                                   "readout.weight": "output", "readout.bias": "bias",
                                   **{f"block.{n}": r for n, r in BLOCK_ROLES.items()}}),
    "tied": (TiedLM, TIED),
    "tied-readout-first": (lambda w: TiedLM(w, readout_first=True),  # the tensor's first name is the readout's
                           {"readout.weight": "input", **{n: r for n, r in TIED.items() if n != "embed.weight"}}),
}


@pytest.mark.parametrize("kind", list(CUSTOM))
def test_width_mult_guess_agrees_with_base_shapes_on_custom_models(kind):
    build, roles = CUSTOM[kind]
    model = build(2 * BASE)
    by_base = parameter_roles(model, build(BASE))
    assert {n: i.role for n, i in by_base.items()} == roles
    assert by_base == parameter_roles(model, width_mult=2)
    assert by_base == parameter_roles(model, build(BASE), delta_model=build(4 * BASE))


def test_tied_tensor_is_listed_once_with_its_other_name():
    infos = parameter_roles(TiedLM(2 * BASE), TiedLM(BASE))
    assert infos["embed.weight"] == ParamInfo("embed.weight", "input", 2.0, VOCAB, 2 * BASE, (VOCAB, 2 * BASE),
                                              tied=("readout.weight",))
    first = parameter_roles(TiedLM(2 * BASE, readout_first=True), width_mult=2)
    assert first["readout.weight"].tied == ("embed.weight",) and first["readout.weight"].fan_in == VOCAB
    # An override may name any of the tensor's names.
    overridden = parameter_roles(TiedLM(2 * BASE), width_mult=2, roles={"readout.*": "output"})
    assert overridden["embed.weight"].role == "output"
    groups = param_groups(TiedLM(2 * BASE), width_mult=2, lr=LR, weight_decay=WD, fixed_lr=2 * LR)
    tied = next(g for g in groups if "embed.weight" in g["param_names"])
    assert (tied["role"], tied["lr"], tied["weight_decay"]) == ("input", 2 * LR, WD)
    assert "output" not in {g["role"] for g in groups}


@pytest.mark.parametrize("kind", ["mlp", "transformer", "conv"])
def test_delta_model_gives_the_base_width_the_roles_of_every_wider_model(kind):
    build = MODELS[kind]
    wide = parameter_roles(build(2 * BASE), build(BASE))
    at_base = parameter_roles(build(BASE), build(BASE), delta_model=build(2 * BASE))
    assert {n: i.role for n, i in at_base.items()} == {n: i.role for n, i in wide.items()} == ROLES[kind]
    assert {i.width_mult for i in at_base.values()} == {1.0}


@pytest.mark.parametrize("kwargs, exception, message", [
    (dict(width_mult=1, delta_model=ToyMLP(16)), ValueError, "delta_model: needs base_model"),
    (dict(base_model=ToyMLP(8), delta_model=ToyMLP(8)), ValueError,
     "base_model: every parameter has the same shape as in delta_model"),
    (dict(base_model=ToyMLP(8), delta_model=ToyMLP(4)), ValueError,
     "delta_model: inp.weight: shape (4, 6) is smaller than base_model's (8, 6)"),
    (dict(base_model=ToyMLP(8), delta_model=ToyMLP(16, hidden_bias=False)), ValueError,
     "hidden.bias: delta_model has no parameter of this name"),
    (dict(base_model=ToyMLP(8), delta_model="mlp"), TypeError, "delta_model: expected a torch.nn.Module, got str"),
])
def test_delta_model_bad_input_raises_naming_it(kwargs, exception, message):
    with pytest.raises(exception, match=re.escape(message)):
        parameter_roles(ToyMLP(8), **kwargs)


# ---------------------------------------------------------------- the table of groups

def test_describe_groups_has_one_row_per_parameter_with_its_rates():
    model = ToyTransformer(4 * BASE)
    groups = param_groups(model, ToyTransformer(BASE), lr=LR, weight_decay=WD, fixed_lr=2 * LR)
    table = describe_groups(groups)
    assert table.columns.tolist() == ["name", "role", "shape", "width_mult", "lr", "weight_decay", "lr_scale",
                                      "wd_scale"]
    assert table["name"].tolist() == [n for g in groups for n in g["param_names"]]  # group by group
    assert sorted(table["name"]) == sorted(n for n, _ in model.named_parameters())
    rows = table.set_index("name")
    for name, role in ROLES["transformer"].items():
        lr_x, wd_x = (1 / 4, 4) if role in ("hidden", "output") else (2, 0 if role == "gain" else 1)
        assert (rows.loc[name, "role"], rows.loc[name, "width_mult"]) == (role, 4.0)
        assert (rows.loc[name, "lr"], rows.loc[name, "weight_decay"]) == (pytest.approx(LR * lr_x),
                                                                           pytest.approx(WD * wd_x))
    assert rows.loc["readout.weight", "shape"] == (VOCAB, 4 * BASE)
    # An optimizer's groups: the current rates, after a scheduler step.
    opt = torch.optim.AdamW(groups)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)  # sets every lr to 0.5 × its initial lr
    assert describe_groups(opt.param_groups)["lr"].tolist() == pytest.approx((table["lr"] * 0.5).tolist())


@pytest.mark.parametrize("groups, message", [
    ([{"params": [], "param_names": []}], "groups[0]: has no 'role'; build groups with param_groups()"),
    ([{"params": [nn.Parameter(torch.zeros(1))], "role": "bias"}], "groups[0]: has no 'param_names'"),
    ([{"params": [nn.Parameter(torch.zeros(1))], "param_names": [], "role": "bias"}], "groups[0]: has 1 params but 0"),
])
def test_describe_groups_bad_input_raises(groups, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        describe_groups(groups)


def test_a_layer_type_registered_for_the_monitor_also_orients_its_fans_here():
    class TransposedReadout(nn.Module):  # y = x @ weight, weight (in, out): fresh class, so registration is local
        def __init__(self, n_in: int, n_out: int):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(n_in, n_out))

    class Net(nn.Module):
        def __init__(self, width: int):
            super().__init__()
            self.embed, self.readout = nn.Embedding(VOCAB, width), TransposedReadout(width, 3)

    model, base = Net(2 * BASE), Net(BASE)
    assert parameter_roles(model, base)["readout.weight"].role == "input"  # read as (out, in): fan-in 3, fixed
    register_layer_type(TransposedReadout, 2, lambda module, x: x.reshape(-1, x.shape[-1]), lambda w: w.T)
    info = parameter_roles(model, base)["readout.weight"]
    assert (info.role, info.fan_in, info.fan_out, info.width_mult) == ("output", 2 * BASE, 3, 2.0)
