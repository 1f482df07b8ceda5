"""The theory figures: files are written, and the numbers beside them make sense."""

import numpy as np
import pandas as pd
import pytest

from lrtransfer.plots.theory import extra_warmup_data, plot_extra_warmup, write_theory_figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("theory")
    return out, write_theory_figures(out)


def test_writes_png_and_csv_pairs(written):
    out, paths = written
    names = {"figure7_extra_warmup", "figure15_update_alignment"}
    assert sorted(p.name for p in paths) == sorted(f"{n}.{ext}" for n in names for ext in ("png", "csv"))
    for p in paths:
        assert p.parent == out and p.stat().st_size > 1000
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG_MAGIC


def test_figure7_numbers(written):
    df = pd.read_csv(written[0] / "figure7_extra_warmup.csv")
    assert len(df) == 20_000 and df.step.tolist() == list(range(20_000))
    ratio = df.base_x_decay_away / df.base
    assert ratio.iloc[0] == pytest.approx(1 / 16, rel=1e-6)  # Eq 15 starts at 1/m of the base
    assert 0.9 < ratio.iloc[-1] < 1.0 and np.all(np.diff(df.decay_away_factor) >= 0)  # and approaches the base
    assert df.exp_factor.iloc[0] == pytest.approx(1 / 16) and np.all(df.exp_factor[df.step >= 10_000] == 1.0)
    np.testing.assert_allclose(df.base_x_exp, df.base * df.exp_factor, rtol=1e-6)
    assert df.base.max() == 1.0 and df.base.idxmax() == 1999  # 10% warmup: peak at step 1999


def test_figure15_numbers(written):
    df = pd.read_csv(written[0] / "figure15_update_alignment.csv")
    assert set(df.C) == {256, 1024, 4096} and set(df.phi) == {0.0, 0.01, 1.0}
    sim = df[df.trials > 0]
    assert len(sim) == 3 * 3 * 7  # markers use 1/4 of default_trials: a looser check than test_theory's
    assert np.all(np.abs(sim.sim_eq23 / sim.eq27 - 1) < 0.08) and np.all(sim.sim_mean <= sim.sim_eq23 * 1.01)
    for _, d in df.groupby(["C", "phi"]):
        assert np.all(np.diff(d.sort_values("B").eq27) <= 1e-12)  # alignment falls with batch size
    big = df[(df.phi == 0) & (df.B == 8192)]
    np.testing.assert_allclose(big.eq27, np.sqrt(1 / big.C + 1 / 8192 + 1 / (big.C * 8192)))


def test_plot_uses_only_the_given_frame(tmp_path):
    """A short schedule plots from its frame alone (no recomputation), attrs or not."""
    df = extra_warmup_data(total=200)
    df.attrs.clear()
    path = plot_extra_warmup(df, tmp_path / "sub" / "f7.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
