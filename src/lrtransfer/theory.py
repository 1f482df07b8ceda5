"""The paper's two toy models, in closed form and (for the first) by simulation.

* Update alignment of one neuron with fan-in ``C`` at batch size ``B`` when per-sample gradients
  share a signal with signal-to-noise ratio ``φ`` (Appendix E, Eq 16–28).
* The weight RMS ``ρ_t`` and relative update ``η_t/ρ_t`` of a layer trained with PyTorch AdamW
  (decay ``1 - η·λ`` per step, unit-RMS updates orthogonal to the weights; Appendix F, Eq 29–39,
  summarised in Appendix B, Eq 11–13), including the warmup effect of ``(η/m, m·λ)``.

Inputs are scalars or numpy arrays (broadcast); invalid values raise ``ValueError`` naming the
argument.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

ArrayLike = float | np.ndarray


def _arr(name: str, x: ArrayLike, *, low: float = -np.inf, strict: bool = False) -> np.ndarray:
    """``x`` as a float array, checked finite and ``> low`` (strict) or ``>= low``."""
    a = np.asarray(x, dtype=float)
    bad = (a <= low) if strict else (a < low)
    if not np.all(np.isfinite(a)) or np.any(bad):
        raise ValueError(f"{name}: must be finite and {'>' if strict else '>='} {low}, got {x!r}")
    return a


def _out(x: np.ndarray) -> ArrayLike:
    return float(x) if np.ndim(x) == 0 else x


def _decay(lr: np.ndarray, weight_decay: np.ndarray, name: str = "lr") -> np.ndarray:
    """The per-step decay multiplier ``a = 1 - η·λ`` (Eq 30), which must stay positive."""
    if np.any(lr * weight_decay >= 1.0):
        raise ValueError(f"{name}: {name}·weight_decay must be < 1 so that a = 1 - η·λ > 0")
    return 1.0 - lr * weight_decay


# --- Appendix E: update alignment in a signal-plus-noise model ----------------------------------


def update_alignment(C: ArrayLike, B: ArrayLike, phi: ArrayLike) -> ArrayLike:
    """Predicted update alignment ``α_ΔW = ‖ΔwᵀX‖/(‖Δw‖‖X‖)`` of the Appendix E model, Eq 27.

    ``C`` is the fan-in, ``B`` the batch size and ``phi`` the gradient signal-to-noise ratio φ
    (Eq 18). Eq 27 is the Eq 23 ratio of expectations ``√(E‖ΔwᵀX‖² / (E‖Δw‖² E‖X‖²))``.
    """
    c, b, p = _arr("C", C, low=0, strict=True), _arr("B", B, low=0, strict=True), _arr("phi", phi, low=0)
    num = (c + 2) + (b - 1) + (1 + b) ** 2 * p + p * (b - 1) + b**2 * p**2 * (c + 2) + 2 * b * p * c
    return _out(np.sqrt(num / ((1 + b * p) * (1 + p) * c * b)))


def update_alignment_approx(C: ArrayLike, B: ArrayLike, phi: ArrayLike) -> ArrayLike:
    """Eq 28, the simple approximation of Eq 27: ``α_ΔW ≈ √(1/C + 1/B + φ/(1+φ))``.

    So ``α ≈ 1/√B`` for ``B ≪ C`` and φ = 0 (μP's regime) but ``≈ 1/√C`` for ``B ≫ C``.
    """
    c, b, p = _arr("C", C, low=0, strict=True), _arr("B", B, low=0, strict=True), _arr("phi", phi, low=0)
    return _out(np.sqrt(1 / c + 1 / b + p / (1 + p)))


class AlignmentSim(NamedTuple):
    """Monte Carlo estimates of the update alignment (see ``simulate_update_alignment``)."""

    eq23: float  # √(mean ‖ΔwᵀX‖² / (mean ‖Δw‖² · mean ‖X‖²)): what Eq 27 predicts
    mean: float  # mean over trials of the per-trial α_ΔW = ‖ΔwᵀX‖/(‖Δw‖‖X‖)
    trials: int


def _alignment_terms(rng: np.random.Generator, n: int, C: int, B: int, phi: float) -> np.ndarray:
    """``n`` draws of the model; rows are (‖ΔwᵀX‖², ‖Δw‖², ‖X‖²). Float32 to halve the memory traffic."""
    y = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, B))  # y'_b = ±1
    signal = np.sqrt(phi, dtype=np.float32) * rng.standard_normal((n, C), dtype=np.float32)  # √φ·s
    x = rng.standard_normal((n, B, C), dtype=np.float32)  # noise x̃_b ~ N(0, I_C)
    rows = max(1, 2**18 // C)  # add the signal in blocks: a full-size temporary costs more than the sum
    for b in range(0, B, rows):
        x[:, b : b + rows] += signal[:, None, :] / y[:, b : b + rows, None]
    x /= np.sqrt(1 + phi, dtype=np.float32)  # Eq 19; x[:, b] is the input x_b
    g = np.matmul(y[:, None, :], x)[:, 0, :] / B  # Eq 17: g = (1/B) Σ_b y'_b x_b
    dw = -g  # Eq 22 with η = 1 (α_ΔW does not depend on η)
    out = np.matmul(x, dw[:, :, None])[:, :, 0]  # Δwᵀ x_b for each b
    norms = [np.einsum("nb,nb->n", out, out), np.einsum("nc,nc->n", dw, dw), np.einsum("nbc,nbc->n", x, x)]
    return np.stack(norms, 1).astype(float)


def _check_counts(**counts: int) -> None:
    for name, v in counts.items():
        if int(v) != v or v < 1:
            raise ValueError(f"{name}: must be a positive integer, got {v!r}")


def default_trials(C: int, B: int) -> int:
    """Trials for about 1% precision of the Eq 23 estimate: ``max(2^20/(B·C), 2^12/C)`` in [1, 4096].

    Small cells need many draws (``2^20`` matrix entries in all), large ones few, but never
    fewer than ``2^12/C``: ``‖g‖²`` and, when the signal dominates (``B·φ ≳ 1``), ``‖s‖²`` are
    χ²-like with relative spread ``√(2/C)`` whatever ``B`` is.
    """
    _check_counts(C=C, B=B)
    return int(np.clip(max(2**20 // (B * C), 2**12 // C), 1, 4096))


def simulate_update_alignment(
    C: int, B: int, phi: float, trials: int | None = None, seed: int = 0, chunk: int = 2**22
) -> AlignmentSim:
    """Monte Carlo of the Appendix E model (Eq 16–22): the data Eq 27 is meant to predict.

    Each trial draws ``y'_b = ±1``, ``s, x̃_b ~ N(0, I_C)``, the inputs ``x_b`` of Eq 19, the
    gradient ``g`` of Eq 17 and the SGD update ``Δw = -η·g`` (Eq 22). Returns the Eq 23 estimate
    (ratio of the trial means of the squared norms), which is what Eq 27 computes exactly, and
    the plain mean of the per-trial ``α_ΔW``. The two differ by the Eq 23 approximation
    (E of a ratio vs ratio of Es): up to about 7% at C = 16, φ = 1 (the mean is lower),
    negligible when C and B are large and the norms concentrate. ``trials=None`` uses
    ``default_trials(C, B)``; trials run in batches of about ``chunk`` matrix entries.
    """
    _check_counts(C=C, B=B, chunk=chunk)
    if not (np.isfinite(phi) and phi >= 0):
        raise ValueError(f"phi: must be finite and >= 0, got {phi!r}")
    trials = default_trials(C, B) if trials is None else trials
    _check_counts(trials=trials)
    rng = np.random.default_rng(seed)
    per_batch = max(1, chunk // (B * C))
    terms = np.concatenate(
        [_alignment_terms(rng, min(per_batch, trials - i), C, B, phi) for i in range(0, trials, per_batch)]
    )
    num, dw2, x2 = terms.T
    eq23 = np.sqrt(num.mean() / (dw2.mean() * x2.mean()))
    return AlignmentSim(float(eq23), float(np.sqrt(num / (dw2 * x2)).mean()), int(trials))


# --- Appendix F: weight norm and relative update under weight decay -----------------------------


def rms_trajectory(lrs: np.ndarray, weight_decay: float, rho0: float) -> np.ndarray:
    """Weight RMS ``ρ_0 .. ρ_T`` under the simple RMS model, recurrence Eq 30 (= Eq 11).

    ``ρ_{t+1}² = a_t² ρ_t² + η_t²`` with ``a_t = 1 - η_t·λ``: ``lrs`` holds ``η_0 .. η_{T-1}``
    (absolute LR per step), ``weight_decay`` is λ and ``rho0`` the RMS at initialisation.
    Updates have unit RMS (Adam) and are orthogonal to the weights. Returns ``T + 1`` values.
    """
    eta = _arr("lrs", lrs, low=0)
    if eta.ndim != 1:
        raise ValueError(f"lrs: must be 1-D, got shape {eta.shape}")
    a = _decay(eta, _arr("weight_decay", weight_decay, low=0), "lrs")
    rho2 = np.empty(eta.size + 1)
    rho2[0] = _arr("rho0", rho0, low=0) ** 2
    for t in range(eta.size):  # a plain loop: the rolled-out Eq 31 under/overflows on long runs
        rho2[t + 1] = a[t] ** 2 * rho2[t] + eta[t] ** 2
    return np.sqrt(rho2)


def equilibrium_rms(lr: ArrayLike, weight_decay: ArrayLike) -> ArrayLike:
    """Equilibrium RMS ``ρ∞ = η/√(1 - a²)``, ``a = 1 - η·λ`` (Eq 33 = Eq 12; ≈ √(η/2λ)).

    The fixed point of Eq 30 for a constant LR ``η = lr`` and ``λ = weight_decay``; ``inf``
    for ``λ = 0`` (the norm then grows without bound, Eq 37).
    """
    eta, lam = _arr("lr", lr, low=0, strict=True), _arr("weight_decay", weight_decay, low=0)
    a = _decay(eta, lam)
    with np.errstate(divide="ignore"):
        return _out(eta / np.sqrt(1.0 - a**2))


def time_to_equilibrium(lr: ArrayLike, weight_decay: ArrayLike, rho0: ArrayLike) -> ArrayLike:
    """Steps until the RMS is near equilibrium for a constant LR, Eq 34.

    With ``r = ρ0²/ρ∞²``: ``T = ln((1-r)/(1-1/√2)) / (2ηλ)`` when ``r < 1/√2``,
    ``T = ln((r-1)/(√2-1)) / (2ηλ)`` when ``r > √2``, else 0. Solving Eq 33 shows these are the
    times at which ``ρ_t²`` comes within a factor √2 of ``ρ∞²`` (``ρ_t`` within ``2^(1/4)`` of
    ρ∞), using ``-ln a ≈ ηλ`` (relative error ≈ ηλ/2). The paper's printed case conditions
    (``ρ0`` vs ``ρ∞/√2`` and ``√2·ρ∞``) do not match its logarithms and would make T jump to 0;
    we use the conditions on ``ρ0²`` that make T continuous. ``inf`` when ``λ = 0``.
    """
    eta, lam = _arr("lr", lr, low=0, strict=True), _arr("weight_decay", weight_decay, low=0)
    rho_inf = np.asarray(equilibrium_rms(eta, lam))
    r = _arr("rho0", rho0, low=0) ** 2 / rho_inf**2
    with np.errstate(divide="ignore", invalid="ignore"):
        below = np.log(np.maximum((1 - r) / (1 - 2**-0.5), 1.0))
        above = np.log(np.maximum((r - 1) / (2**0.5 - 1), 1.0))
        t = np.where(r < 2**-0.5, below, np.where(r > 2**0.5, above, 0.0)) / (2 * eta * lam)
    return _out(np.where(lam == 0, np.inf, t))


def relative_update(lrs: np.ndarray, weight_decay: float, rho0: float, include_decay: bool = False) -> np.ndarray:
    """Relative weight update ``‖ΔW_t‖/‖W_t‖ = η_t/ρ_t`` for each step, Eq 35 with ``b = 1``.

    ``ρ_t`` follows Eq 30 (``rms_trajectory``). For a constant LR this tends to
    ``√(2ηλ - η²λ²)`` (Eq 36), and without weight decay it is ``1/√(ρ0²/η² + t)`` (Eq 37).
    Eq 35 counts the update term η_t·U_t only. ``include_decay`` counts the whole step of Eq 30,
    ``W_{t+1} - W_t = -η_t λ W_t + η_t U_t`` with U_t ⟂ W_t, as a measured ΔW does (the monitor's
    ``relative_update``): ``√((η_t/ρ_t)² + (η_t λ)²)``. Returns ``T`` values for ``T`` LRs.
    """
    _arr("rho0", rho0, low=0, strict=True)  # η_0/ρ_0 needs ρ_0 > 0
    rho = rms_trajectory(lrs, weight_decay, rho0)
    eta = np.asarray(lrs, dtype=float)
    update = eta / rho[:-1]
    return np.hypot(update, eta * float(weight_decay)) if include_decay else update


def warmup_effect(
    steps: ArrayLike, width_mult: float, lr: float, weight_decay: float, rho0: float
) -> ArrayLike:
    """Warmup effect ``s_t`` of ``(η/m, m·λ)`` over ``(η, λ)`` for a constant LR, Eq 39 (= Eq 13).

    ``s_t = √((1 + (r-1)a^{2t}) / (1 + (m²r-1)a^{2t}))`` with ``r = ρ0²/ρ∞²``, ``a = 1 - ηλ``,
    ``m = width_mult``: the ratio of relative updates of the two configurations (Eq 38), both
    starting at RMS ``rho0``. Goes from 1/m at t = 0 to 1; for ``ρ0 = ρ∞`` it is
    ``(1 + (m²-1)a^{2t})^(-1/2)`` (Eq 13).
    """
    t = _arr("steps", steps, low=0)
    if not width_mult >= 1:
        raise ValueError(f"width_mult: must be >= 1, got {width_mult!r}")
    eta = _arr("lr", lr, low=0, strict=True)
    lam = _arr("weight_decay", weight_decay, low=0, strict=True)
    r = _arr("rho0", rho0, low=0, strict=True) ** 2 / np.asarray(equilibrium_rms(eta, lam)) ** 2
    a2t = _decay(eta, lam) ** (2 * t)
    return _out(np.sqrt((1 + (r - 1) * a2t) / (1 + (width_mult**2 * r - 1) * a2t)))
