"""Schedules: expected multiplier per step (tables), the LambdaLR wrapper, and argument errors."""

from functools import partial

import numpy as np
import pytest
import torch

from lrtransfer import schedules as S

# total = 10, warmup = 0.3 → W = 3: ramp (t+1)/3, then (10-t)/7, 0 from step 10 on.
LINEAR = {0: 1 / 3, 1: 2 / 3, 2: 1.0, 3: 1.0, 4: 6 / 7, 6: 4 / 7, 9: 1 / 7, 10: 0.0, 12: 0.0}
# total = 10, warmup = 0.2 → W = 2: ramp (t+1)/2, then (1+cos(π(t-2)/8))/2.
COSINE = {0: 0.5, 1: 1.0, 2: 1.0, 4: (1 + np.cos(np.pi / 4)) / 2, 6: 0.5, 9: (1 + np.cos(7 * np.pi / 8)) / 2, 10: 0.0}
# Eq 14 with m = 16, T_W = 50: 16^min(0, t/50 - 1).
EXP = {0: 1 / 16, 25: 1 / 4, 40: 16**-0.2, 50: 1.0, 80: 1.0}


@pytest.mark.parametrize("step, expected", LINEAR.items())
def test_warmup_linear_decay_table(step, expected):
    assert S.warmup_linear_decay(step, total=10, warmup=0.3) == pytest.approx(expected)


@pytest.mark.parametrize("step, expected", COSINE.items())
def test_warmup_cosine_table(step, expected):
    assert S.warmup_cosine(step, total=10, warmup=0.2) == pytest.approx(expected)


@pytest.mark.parametrize("step, expected", EXP.items())
def test_exp_warmup_table(step, expected):
    assert S.exp_warmup(step, width_mult=16, length=50) == pytest.approx(expected)


def test_paper_default_schedule():
    """10% warmup of 20,000 steps: 1/2000 at step 0, peak at steps 1999-2000, no zero step."""
    m = S.warmup_linear_decay(np.arange(20_000), total=20_000)
    assert m[0] == pytest.approx(1 / 2000) and m[1999] == m[2000] == 1.0
    assert m.max() == 1.0 and m.min() == pytest.approx(1 / 18_000)
    assert np.all(np.diff(m[:2000]) > 0) and np.all(np.diff(m[2000:]) < 0)


def test_edge_warmups():
    assert S.warmup_linear_decay(np.arange(4), total=4, warmup=0.0).tolist() == [1.0, 0.75, 0.5, 0.25]
    assert S.warmup_linear_decay(np.arange(4), total=4, warmup=1.0).tolist() == [0.25, 0.5, 0.75, 1.0]
    assert S.constant(np.arange(3), total=3).tolist() == [1.0, 1.0, 1.0] and S.constant(7) == 1.0


def test_array_and_scalar_steps_agree():
    steps = np.arange(12)
    for fn in (partial(S.warmup_linear_decay, total=10, warmup=0.3), partial(S.warmup_cosine, total=10, warmup=0.2)):
        assert isinstance(fn(3), float)
        np.testing.assert_allclose(fn(steps), [fn(int(t)) for t in steps])


def test_decay_away_matches_eq15_loop():
    """Eq 15 by a direct loop over the product ∏_{τ<t} (1 - η_τλ)²; entry 0 is 1/m."""
    lrs = 0.004 * S.warmup_linear_decay(np.arange(300), total=300)
    prod, expected = 1.0, []
    for eta in lrs:
        expected.append((1 + (16**2 - 1) * prod) ** -0.5)
        prod *= (1 - eta * 0.1) ** 2
    got = S.decay_away_warmup(lrs, weight_decay=0.1, width_mult=16)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[0] == pytest.approx(1 / 16)


def test_decay_away_limits():
    assert np.allclose(S.decay_away_warmup(np.full(5, 0.01), 0.0, 4), 0.25)  # no decay: stays 1/m
    assert np.allclose(S.decay_away_warmup(np.full(5, 0.01), 0.1, 1), 1.0)  # m = 1: no extra warmup
    assert S.decay_away_warmup(np.full(20_000, 0.01), 1.0, 16)[-1] == pytest.approx(1.0)


def test_combine_multiplies_functions_and_arrays():
    base = partial(S.warmup_linear_decay, total=10, warmup=0.3)
    extra = np.linspace(0.1, 1.0, 10)
    both = S.combine(base, partial(S.exp_warmup, width_mult=4, length=5), extra)
    t = np.arange(10)
    np.testing.assert_allclose(both(t), base(t) * S.exp_warmup(t, 4, 5) * extra)
    assert S.per_step(extra)(25) == 1.0  # past the end holds the last value


def _two_group_optimizer():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    return torch.optim.AdamW([{"params": [a], "lr": 1e-2}, {"params": [b], "lr": 2.5e-3}], weight_decay=0.1)


@pytest.mark.parametrize("as_array", [False, True])
def test_lambda_lr_multiplies_each_group(as_array):
    """Each group keeps its own scaled LR: lr_t = group lr × multiplier(t), t = optimizer step."""
    total = 10
    schedule = partial(S.warmup_linear_decay, total=total, warmup=0.3)
    opt = _two_group_optimizer()
    sched = S.lambda_lr(opt, schedule(np.arange(total)) if as_array else schedule)
    for t in range(total):
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-2 * schedule(t), 2.5e-3 * schedule(t)])
        opt.step()
        sched.step()
    assert [g["initial_lr"] for g in opt.param_groups] == [1e-2, 2.5e-3]


def test_lambda_lr_resumes_at_step():
    opt = _two_group_optimizer()
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    S.lambda_lr(opt, partial(S.exp_warmup, width_mult=16, length=50), last_step=24)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-2 / 4, 2.5e-3 / 4])  # step 25


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: S.warmup_linear_decay(0, total=0), "total"),
        (lambda: S.warmup_linear_decay(0, total=10.5), "total"),
        (lambda: S.warmup_linear_decay(0, total=10, warmup=1.5), "warmup"),
        (lambda: S.warmup_cosine(0, total=10, warmup=-0.1), "warmup"),
        (lambda: S.warmup_linear_decay(-1, total=10), "step"),
        (lambda: S.constant(0, total=-3), "total"),
        (lambda: S.exp_warmup(0, width_mult=0.5, length=10), "width_mult"),
        (lambda: S.exp_warmup(0, width_mult=2, length=0), "length"),
        (lambda: S.decay_away_warmup([0.1, -0.1], 0.1, 2), "lrs"),
        (lambda: S.decay_away_warmup([], 0.1, 2), "lrs"),
        (lambda: S.decay_away_warmup([2.0], 0.5, 2), "lrs"),
        (lambda: S.decay_away_warmup([0.1], -0.1, 2), "weight_decay"),
        (lambda: S.decay_away_warmup([0.1], 0.1, 0.9), "width_mult"),
        (lambda: S.per_step([[1.0]]), "values"),
        (lambda: S.combine(), "factors"),
    ],
)
def test_invalid_arguments_are_named(call, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        call()
