"""Theory: Eq 27/28 vs a Monte Carlo of the Appendix E model; Eq 30–39 vs their recurrence."""

import numpy as np
import pytest

from lrtransfer import theory as T

GRID = [16, 64, 256, 1024, 4096]


# --- Appendix E: update alignment ---------------------------------------------------------------


@pytest.mark.parametrize("phi", [0.0, 0.01, 1.0])
def test_eq27_matches_monte_carlo_on_grid(phi):
    """Eq 27 is the Eq 23 ratio of expectations; the simulation estimates exactly that.

    Measured with ``default_trials`` and seed 0: max relative error 2.2% over the grid
    (C, B ∈ {16 … 4096}, φ ∈ {0, 0.01, 1}; at C = B = 4096, φ = 0.01); seeds 1–5 give 1.8–3.0%.
    """
    errors = {
        (c, b): T.simulate_update_alignment(c, b, phi, seed=0).eq23 / T.update_alignment(c, b, phi) - 1
        for c in GRID
        for b in GRID
    }
    worst = max(errors, key=lambda k: abs(errors[k]))
    assert abs(errors[worst]) < 0.05, f"C, B = {worst}: {errors[worst]:+.2%}"


def test_eq23_gap_of_the_per_trial_mean():
    """The mean of per-trial α is below the Eq 23 estimate where norms fluctuate (small C, large φ)."""
    small = T.simulate_update_alignment(16, 1024, 1.0, seed=0)
    large = T.simulate_update_alignment(1024, 64, 1.0, seed=0)
    assert -0.12 < small.mean / small.eq23 - 1 < -0.04
    assert abs(large.mean / large.eq23 - 1) < 0.01


def test_eq27_direct_values():
    """Hand-evaluated Eq 27: φ = 0 gives √((C+B+1)/(CB)); φ → ∞ gives α → 1 for B ≫ 1."""
    assert T.update_alignment(64, 16, 0.0) == pytest.approx(np.sqrt(81 / 1024))
    assert T.update_alignment(256, 4096, 0.0) == pytest.approx(np.sqrt((256 + 4096 + 1) / (256 * 4096)))
    assert T.update_alignment(1024, 4096, 1e6) == pytest.approx(1.0, rel=1e-3)
    np.testing.assert_allclose(T.update_alignment(np.array(GRID), 64, 0.0),
                               [T.update_alignment(c, 64, 0.0) for c in GRID])


@pytest.mark.parametrize(
    "C, B, phi, expected",
    [
        (2**20, 16, 0.0, 1 / np.sqrt(16)),  # B ≪ C, φ = 0: μP's regime, α ≈ 1/√B
        (2**20, 256, 0.0, 1 / np.sqrt(256)),
        (16, 2**20, 0.0, 1 / np.sqrt(16)),  # B ≫ C: α ≈ 1/√C, width dependent
        (256, 2**20, 0.0, 1 / np.sqrt(256)),
        (2**20, 2**20, 0.1, np.sqrt(0.1 / 1.1)),  # B ≫ 1/φ ≫ … : α ≈ √(φ/(1+φ)), no C dependence
    ],
)
def test_eq27_and_eq28_regimes(C, B, phi, expected):
    assert T.update_alignment(C, B, phi) == pytest.approx(expected, rel=0.01)
    assert T.update_alignment_approx(C, B, phi) == pytest.approx(expected, rel=0.01)


def test_eq28_approximates_eq27_over_grid():
    c, b, phi = np.meshgrid(GRID, GRID, [0.0, 0.01, 1.0])
    ratio = T.update_alignment_approx(c, b, phi) / T.update_alignment(c, b, phi)
    assert np.all(np.abs(ratio - 1) < 0.05)


# --- Appendix F: weight norm, relative update, warmup effect ------------------------------------


def test_rms_trajectory_matches_rolled_out_eq31():
    lrs = np.linspace(1e-3, 5e-2, 50) ** 1.3
    lam, rho0 = 0.5, 0.3
    a2 = (1 - lrs * lam) ** 2
    rolled = [rho0**2] + [
        rho0**2 * np.prod(a2[: t + 1]) + sum(lrs[k] ** 2 * np.prod(a2[k + 1 : t + 1]) for k in range(t + 1))
        for t in range(50)
    ]
    np.testing.assert_allclose(T.rms_trajectory(lrs, lam, rho0), np.sqrt(rolled), rtol=1e-12)


@pytest.mark.parametrize("rho0", [0.0, 0.05, 0.5])
def test_rms_trajectory_constant_lr_closed_form(rho0):
    """Eq 32 and its equilibrium form Eq 33 for a constant LR."""
    eta, lam, t = 0.01, 0.2, np.arange(3001)
    a = 1 - eta * lam
    eq32 = rho0**2 * a ** (2 * t) + eta**2 * (1 - a ** (2 * t)) / (1 - a**2)
    rho_inf2 = T.equilibrium_rms(eta, lam) ** 2
    eq33 = rho_inf2 + (rho0**2 - rho_inf2) * a ** (2 * t)
    rho = T.rms_trajectory(np.full(3000, eta), lam, rho0)
    np.testing.assert_allclose(rho**2, eq32, rtol=1e-10)
    np.testing.assert_allclose(rho**2, eq33, rtol=1e-10)


@pytest.mark.parametrize("eta, lam", [(4e-3, 0.1), (1e-2, 1.0), (0.5, 1.5)])
def test_equilibrium_rms_is_the_fixed_point(eta, lam):
    rho_inf = T.equilibrium_rms(eta, lam)
    assert (1 - eta * lam) ** 2 * rho_inf**2 + eta**2 == pytest.approx(rho_inf**2)
    assert T.rms_trajectory(np.full(5, eta), lam, rho_inf) == pytest.approx(np.full(6, rho_inf))
    if eta * lam < 1e-3:
        assert rho_inf == pytest.approx(np.sqrt(eta / (2 * lam)), rel=1e-3)  # Eq 33's approximation
    assert T.equilibrium_rms(eta, 0.0) == np.inf


def _first_step_near_equilibrium(eta, lam, rho0):
    """First t at which the simulated ρ_t² is within a factor √2 of ρ∞² (what Eq 34 solves)."""
    ratio = T.rms_trajectory(np.full(200_000, eta), lam, rho0) ** 2 / T.equilibrium_rms(eta, lam) ** 2
    return int(np.argmax((ratio >= 2**-0.5) & (ratio <= 2**0.5)))


@pytest.mark.parametrize("eta, lam", [(4e-3, 0.1), (0.1, 0.1)])
@pytest.mark.parametrize("rho0_over_inf", [0.0, 0.3, 0.8, 0.9, 1.0, 1.15, 1.3, 3.0])
def test_time_to_equilibrium_matches_simulation(eta, lam, rho0_over_inf):
    """Both branches of Eq 34, within one step plus the ``ηλ`` vs ``-ln(1-ηλ)`` gap (≈ ηλ/2 relative)."""
    rho0 = rho0_over_inf * T.equilibrium_rms(eta, lam)
    predicted = T.time_to_equilibrium(eta, lam, rho0)
    simulated = _first_step_near_equilibrium(eta, lam, rho0)
    assert abs(predicted - simulated) <= 1 + eta * lam * predicted
    assert (predicted == 0) == (0.5**0.25 <= rho0_over_inf <= 2**0.25)


def test_time_to_equilibrium_no_decay_is_infinite():
    assert T.time_to_equilibrium(1e-3, 0.0, 0.1) == np.inf


def test_relative_update_constant_lr_eq36():
    eta, lam, rho0 = 4e-3, 0.1, 0.02
    a, t = 1 - eta * lam, np.arange(40_000)
    u = T.relative_update(np.full(40_000, eta), lam, rho0)
    closed = np.sqrt(eta**2 / (rho0**2 * a ** (2 * t) + eta**2 * (1 - a ** (2 * t)) / (1 - a**2)))
    np.testing.assert_allclose(u, closed, rtol=1e-10)
    assert u[-1] == pytest.approx(np.sqrt(2 * eta * lam - eta**2 * lam**2), rel=1e-9)  # t → ∞
    assert u[0] == pytest.approx(eta / rho0)  # the first update is set by lr and init alone


def test_relative_update_without_weight_decay_eq37():
    eta, rho0, t = 1e-3, 0.02, np.arange(5000)
    u = T.relative_update(np.full(5000, eta), 0.0, rho0)
    np.testing.assert_allclose(u, 1 / np.sqrt(rho0**2 / eta**2 + t), rtol=1e-10)


def test_relative_update_with_decay_matches_a_simulated_eq30_weight():
    """The whole step of Eq 30, ΔW = -ηλW + ηU with U ⟂ W of unit RMS, measured on simulated weights."""
    rng = np.random.default_rng(0)
    n, steps, lam, rho0 = 4096, 300, 1.0, 0.05
    lrs = 2e-2 * np.minimum(1, (np.arange(steps) + 1) / 30)
    w, measured = rho0 * rng.standard_normal(n), []
    for eta in lrs:
        u = rng.standard_normal(n)
        u -= (u @ w) / (w @ w) * w  # orthogonal to W, as the model assumes
        u *= np.sqrt(n) / np.linalg.norm(u)  # unit RMS (Adam)
        new = (1 - eta * lam) * w + eta * u
        measured.append(np.linalg.norm(new - w) / np.linalg.norm(w))
        w = new
    full = T.relative_update(lrs, lam, rho0, include_decay=True)
    np.testing.assert_allclose(measured, full, rtol=0.02)  # the RMS ρ_t of a finite vector fluctuates a little
    update_only = T.relative_update(lrs, lam, rho0)
    assert np.all(full > update_only) and full[-1] / update_only[-1] > 1.005  # λ = 1: the decay term shows


@pytest.mark.parametrize("rho0", [1e-3, 0.02, 0.1414, 0.5])
def test_warmup_effect_matches_two_trajectories_eq38(rho0):
    """s_t of Eq 39 = ratio of relative updates of (η/m, mλ) and (η, λ) from Eq 30 runs (Eq 38)."""
    eta, lam, m, steps = 4e-3, 0.1, 16, 20_000
    base = T.relative_update(np.full(steps, eta), lam, rho0)
    scaled = T.relative_update(np.full(steps, eta / m), m * lam, rho0)
    np.testing.assert_allclose(T.warmup_effect(np.arange(steps), m, eta, lam, rho0), scaled / base, rtol=1e-9)


def test_warmup_effect_at_equilibrium_is_eq13():
    eta, lam, m, t = 4e-3, 0.1, 16, np.arange(0, 20_000, 100)
    s = T.warmup_effect(t, m, eta, lam, T.equilibrium_rms(eta, lam))
    np.testing.assert_allclose(s, 1 / np.sqrt(1 + (m**2 - 1) * (1 - eta * lam) ** (2 * t)), rtol=1e-12)
    assert s[0] == pytest.approx(1 / m) and s[-1] > 0.95


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: T.update_alignment(0, 16, 0.0), "C"),
        (lambda: T.update_alignment(16, -1, 0.0), "B"),
        (lambda: T.update_alignment_approx(16, 16, -0.1), "phi"),
        (lambda: T.simulate_update_alignment(16, 0, 0.0), "B"),
        (lambda: T.simulate_update_alignment(16, 16, -1.0), "phi"),
        (lambda: T.simulate_update_alignment(16, 16, 0.0, trials=0), "trials"),
        (lambda: T.rms_trajectory([0.1, -0.1], 0.1, 1.0), "lrs"),
        (lambda: T.rms_trajectory([2.0], 0.5, 1.0), "lrs"),
        (lambda: T.relative_update([0.1, 2.0], 0.5, 1.0), "lrs"),
        (lambda: T.rms_trajectory([0.1], -0.1, 1.0), "weight_decay"),
        (lambda: T.rms_trajectory([0.1], 0.1, -1.0), "rho0"),
        (lambda: T.equilibrium_rms(0.0, 0.1), "lr"),
        (lambda: T.equilibrium_rms(2.0, 0.5), "lr"),
        (lambda: T.time_to_equilibrium(1e-3, 0.1, np.nan), "rho0"),
        (lambda: T.relative_update([0.1], 0.1, 0.0), "rho0"),
        (lambda: T.warmup_effect(10, 0.5, 1e-3, 0.1, 1.0), "width_mult"),
        (lambda: T.warmup_effect(-1, 2, 1e-3, 0.1, 1.0), "steps"),
        (lambda: T.warmup_effect(10, 2, 1e-3, 0.0, 1.0), "weight_decay"),
    ],
)
def test_invalid_arguments_are_named(call, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        call()
