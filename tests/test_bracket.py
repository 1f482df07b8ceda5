"""The adaptive phase 2 (spec ``bracket``): where each curve starts (`scaling.expected_shift`,
`sweep.plan.bracket`), when it grows (`sweep.stages.bracket_extensions`), real sweeps, and the
refine stage the demo relies on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from lrtransfer.analysis import analyze, lr_curves
from lrtransfer.analysis.picks import phase1_picks
from lrtransfer.phases import Phase
from lrtransfer.scaling import expected_shift, role_hyperparams
from lrtransfer.study import bracket_note
from lrtransfer.sweep import SpecError, load_spec, results, run_sweep
from lrtransfer.sweep.plan import bracket, expected_shifts
from lrtransfer.sweep.stages import bracket_extensions, refine_points

GRID = [1e-3 * 2**k for k in range(7)]  # 1e-3 … 6.4e-2


@pytest.mark.parametrize("lr_scaling", ["mup", "sqrt", "none"])
@pytest.mark.parametrize("wd_scaling", ["standard", "independent"])
@pytest.mark.parametrize("m", [2.0, 4.0, 8.0])
def test_the_expected_shift_keeps_the_hidden_lr_wd_product(lr_scaling, wd_scaling, m):
    """With weight decay: the base LR moved by the shift gives the hidden layers the base's η·λ (Eq 3)."""
    base_lr = 4e-3 * m ** expected_shift(lr_scaling, wd_scaling)
    rules = {"weight_decay": 0.1, "lr_scaling": lr_scaling, "wd_scaling": wd_scaling}
    lr_1, wd_1, _ = role_hyperparams("hidden", 1.0, lr=4e-3, **rules)
    lr_m, wd_m, _ = role_hyperparams("hidden", m, lr=base_lr, **rules)
    assert lr_m * wd_m == pytest.approx(lr_1 * wd_1, rel=1e-12)


@pytest.mark.parametrize("lr_scaling", ["mup", "sqrt", "none"])
def test_without_weight_decay_the_expected_shift_keeps_mups_hidden_lr(lr_scaling):
    base_lr = 4e-3 * 4.0 ** expected_shift(lr_scaling, "none")
    lr_4, _, _ = role_hyperparams("hidden", 4.0, lr=base_lr, weight_decay=0.1, lr_scaling=lr_scaling,
                                  wd_scaling="none")
    assert lr_4 == pytest.approx(4e-3 / 4, rel=1e-12)


def test_the_expected_shifts_of_the_papers_rules():
    assert expected_shift("mup", "independent") == 0.0  # Eq 8: transfers
    assert expected_shift("mup", "standard") == 1.0  # Eq 7: η·λ shrinks by m, the base LR must grow by m
    assert expected_shift("mup", "none") == 0.0  # muP's own promise
    assert expected_shift("none", "standard") == 0.0  # no muP: (η, λ) the same at every width (Fig 4)


@pytest.mark.parametrize("center, shift, m, k, expected", [
    (8e-3, 0.0, 1.0, 3, [4e-3, 8e-3, 1.6e-2]),
    (8e-3, 1.0, 4.0, 3, [1.6e-2, 3.2e-2, 6.4e-2]),  # two octaves up, at the grid's top: moved inward
    (8e-3, 1.0, 8.0, 3, [1.6e-2, 3.2e-2, 6.4e-2]),  # beyond the grid: its last k
    (1e-3, -1.0, 4.0, 3, [1e-3, 2e-3, 4e-3]),  # below the grid: its first k
    (8e-3, 0.5, 2.0, 3, [4e-3, 8e-3, 1.6e-2]),  # half-way between 8e-3 and 1.6e-2: the lower
    (8e-3, 0.0, 2.0, 4, [4e-3, 8e-3, 1.6e-2, 3.2e-2]),  # even k: one more above
    (8e-3, 0.0, 2.0, 9, GRID),  # more than the grid: the grid
    (7e-3, 0.0, 1.0, 3, [4e-3, 8e-3, 1.6e-2]),  # a centre off the grid: its nearest LR
])
def test_bracket(center, shift, m, k, expected):
    assert bracket(list(reversed(GRID)), center, shift, m, k) == pytest.approx(expected, rel=1e-12)


def curve(points: list[tuple[float, float | None]], arm: str = "a", m: float = 2.0) -> pd.DataFrame:
    return pd.DataFrame([{"phase": 2, "arm": arm, "width_mult": m, "lr": lr, "seed": 0,
                          "status": "done" if loss is not None else "diverged",
                          "final_train_loss": np.nan if loss is None else loss} for lr, loss in points])


@pytest.mark.parametrize("points, more", [
    ([(4e-3, 2.0), (8e-3, 2.1), (1.6e-2, 2.2)], [2e-3]),  # best at the low edge: one LR lower
    ([(4e-3, 2.2), (8e-3, 2.1), (1.6e-2, 2.0)], [3.2e-2]),  # best at the high edge: one LR higher
    ([(4e-3, 2.1), (8e-3, 2.0), (1.6e-2, 2.1)], None),  # interior: bracketed
    ([(4e-3, 2.1), (8e-3, 2.0), (1.6e-2, None)], None),  # an unstable high LR bounds it too
    ([(4e-3, None), (8e-3, None), (1.6e-2, None)], [2e-3]),  # nothing stable: too high, go down
    ([(1e-3, 2.0), (2e-3, 2.1), (4e-3, 2.2)], None),  # best at the grid's lowest: nothing left to add
    ([(1.6e-2, 2.2), (3.2e-2, 2.1), (6.4e-2, 2.0)], None),  # and at its highest
    ([(1e-3, None), (2e-3, None)], None),  # unstable down to the grid's end
])
def test_bracket_extensions(points, more):
    got = bracket_extensions(lr_curves(curve(points)), GRID)
    assert got == ({} if more is None else {("a", 2.0): pytest.approx(more, rel=1e-12)})


def test_extensions_are_per_curve():
    frame = pd.concat([curve([(4e-3, 2.0), (8e-3, 2.1), (1.6e-2, 2.2)], "a", 2.0),
                       curve([(4e-3, 2.1), (8e-3, 2.0), (1.6e-2, 2.1)], "a", 4.0),
                       curve([(4e-3, 2.2), (8e-3, 2.1), (1.6e-2, 2.0)], "b", 4.0)])
    assert bracket_extensions(lr_curves(frame), GRID) == {("a", 2.0): [2e-3], ("b", 4.0): [3.2e-2]}


def test_spec_bracket_needs_three_points():
    with pytest.raises(SpecError, match="bracket"):
        load_spec({"base": {"preset": "lm-tiny"}, "lrs": GRID, "bracket": 2})


TINY = {"run.steps": 12, "run.checkpoint_every": 0, "run.eval_every": 0, "optim.weight_decay": 0.1}
LRS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


@pytest.mark.slow  # real sweeps of the tiny LM
@pytest.mark.parametrize("protocol", ["two_phase", "one_phase"])
def test_an_adaptive_sweep_brackets_every_curve_with_fewer_runs(tmp_path, protocol):
    raw = {"name": "bracket", "base": {"preset": "lm-tiny", "overrides": TINY}, "widths": [1, 2], "lrs": LRS,
           "rules": ["standard", "independent"], "protocol": protocol, "bracket": 3}
    spec = load_spec(raw)
    assert expected_shifts(spec) == {"standard": 1.0, "independent": 0.0}
    report = run_sweep(spec, tmp_path / "s", workers=2, progress=False)
    df = results(tmp_path / "s")
    phase2 = df[df.phase.astype(str) == "2"]
    assert report.ok and (phase2.status == "done").all()
    assert not bracket_extensions(lr_curves(phase2), LRS)  # every curve's best is interior, or at the grid's end
    for (arm, m), c in phase2.groupby(["arm", "width_mult"]):
        ran = sorted(c.lr)
        first = LRS.index(ran[0])
        assert ran == LRS[first:first + len(ran)] and len(ran) >= 3, (arm, m, ran)  # a window of the grid
        if protocol == "one_phase" and m == 1:
            assert ran == LRS  # the base width's own curve sets the centre: the whole grid
    full = 5 + 2 * 5  # the whole grid: 1× shared by the arms, 2× per arm
    assert phase2.config_hash.nunique() < full
    (note,) = bracket_note(df, yaml.safe_load((tmp_path / "s" / "sweep.yaml").read_text()))
    sizes = phase2.groupby(["arm", "width_mult"]).lr.nunique()
    assert "bracket 3" in note and f"curves have {sizes.min()}–{sizes.max()} of the grid's 5 LRs" in note
    again = run_sweep(spec, tmp_path / "s", workers=1, progress=False)
    assert not again.outcomes and len(again.planned) == len(report.planned)  # the same rounds, nothing trained


@pytest.mark.slow
def test_curves_that_start_off_their_optimum_grow_until_bracketed(tmp_path):
    """Phase 1 picks from one low LR, so the brackets start too low and grow, a round at a time."""
    raw = {"name": "bracket", "base": {"preset": "lm-tiny", "overrides": TINY}, "widths": [1, 2], "lrs": LRS,
           "rules": ["standard"], "bracket": 3, "phase1_lrs": [1e-3]}
    report = run_sweep(raw, tmp_path / "s", workers=2, progress=False)
    df = results(tmp_path / "s")
    (pick,) = phase1_picks(df[df.phase == Phase.ONE]).values()
    phase2 = df[df.phase == Phase.TWO]
    ran = {m: sorted(phase2[phase2.width_mult == m].lr) for m in (1.0, 2.0)}
    assert set(bracket(LRS, pick, 0.0, 1.0, 3)) < set(ran[1.0])  # started there, then grew
    assert set(bracket(LRS, pick, 1.0, 2.0, 3)) <= set(ran[2.0])  # +1 octave per doubling for standard decay
    assert not bracket_extensions(lr_curves(phase2), LRS)
    assert len({r.phase for r in report.planned}) == 2 and len(report.planned) > 1 + 3 + 3


@pytest.mark.slow
def test_the_refine_stage_adds_a_seed_where_a_verdict_is_inconclusive(tmp_path):
    """The demo relies on it: one more seed at the 3 LRs around each inconclusive arm's optimum at
    the base and widest widths, and nothing else (a real sweep)."""
    raw = {"name": "refine", "base": {"preset": "lm-tiny", "overrides": TINY}, "widths": [1, 2], "lrs": LRS,
           "rules": ["standard", "none"], "protocol": "one_phase", "refine": 1}
    report = run_sweep(raw, tmp_path / "s", workers=2, progress=False)
    df = results(tmp_path / "s")
    first = df[df.seed == 0]
    points = refine_points(analyze(first))
    assert points  # this tiny sweep's verdicts are inconclusive (CIs about −0.1…+0.55)
    added = df[df.seed == 1]
    assert {(a, m, lr) for a, m, lrs in points for lr in lrs} == set(zip(added.arm, added.width_mult, added.lr))
    assert report.refined == len(added) and (added.phase == Phase.TWO).all() and (added.status == "done").all()
