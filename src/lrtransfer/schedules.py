"""Learning-rate schedules: pure functions of an explicit step that return a multiplier.

The effective rate of a parameter group at optimizer step ``t`` is
``group lr (already width-scaled) × multiplier(t)``; nothing here ever sets an absolute rate.

Step convention (every function in this module)
    ``step`` is the 0-based index of the optimizer step the multiplier is used for,
    ``t = 0 .. total-1``. ``lambda_lr`` honours it: ``LambdaLR`` applies ``f(0)`` at construction
    and ``f(k)`` after ``k`` calls of ``scheduler.step()``.

Linear warmup "from 0" (paper G.3: "10% linear warmup from 0")
    With ``W = round(warmup·total)`` warmup steps the multiplier is ``(t+1)/W`` for ``t < W``:
    the ramp ``t/W`` read at the end of each step, so the first step gets ``1/W`` and step
    ``W-1`` reaches 1. We do not use ``t/W`` because in PyTorch AdamW both the update and the
    decoupled decay ``η·λ`` are multiplied by the LR, so a zero multiplier turns step 0 into a
    parameter no-op (a wasted forward/backward that matters in short proxy runs). Symmetrically
    the decay is ``(total-t)/(total-W)``, which reaches 0 at ``t = total``, one past the last
    step, so the last step still learns. Steps ``≥ total`` get 0 (the final ``scheduler.step()``
    of a loop evaluates ``f(total)``, which no optimizer step uses).

Extra width-dependent warmup factors (Appendix B.2) multiply a base schedule:
``exp_warmup`` (Eq 14) and ``decay_away_warmup`` (Eq 15, a per-step array).
Combine them with ``combine`` and hand the result to ``lambda_lr``. `ScheduleConfig` is a run's
choice among them; its `multipliers` are what the run trains with and what analysis reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from lrtransfer.strict import Strict

if TYPE_CHECKING:  # torch is only needed by `lambda_lr`; the schedules themselves are numpy
    import torch
    from torch.optim.lr_scheduler import LambdaLR

Steps = int | float | np.ndarray
Factor = Callable[[Steps], Steps] | Sequence[float] | np.ndarray


def _steps(step: Steps) -> np.ndarray:
    t = np.asarray(step, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"step: must be finite and >= 0, got {step!r}")
    return t


def _out(x: np.ndarray) -> Steps:
    """A Python float for a scalar step, an array for an array of steps."""
    return float(x) if np.ndim(x) == 0 else x


def _check_total(total: int) -> None:
    if int(total) != total or total <= 0:
        raise ValueError(f"total: must be a positive integer, got {total!r}")


def _warmup_steps(total: int, warmup: float) -> int:
    _check_total(total)
    if not 0.0 <= warmup <= 1.0:
        raise ValueError(f"warmup: must be a fraction of total in [0, 1], got {warmup!r}")
    return int(round(warmup * total))


def _warmup_then(t: np.ndarray, total: int, w: int, decay: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(t+1)/w for t < w, then ``decay(progress)`` with progress (t-w)/(total-w) in [0, 1); 0 from total on."""
    ramp = (t + 1.0) / max(w, 1)
    progress = np.clip((t - w) / max(total - w, 1), 0.0, 1.0)
    out = np.where(t < w, ramp, decay(progress))
    return np.where(t >= total, 0.0, out)


def constant(step: Steps, total: int | None = None) -> Steps:
    """Multiplier 1 at every step (``total``, if given, only has to be positive)."""
    t = _steps(step)
    if total is not None:
        _check_total(total)
    return _out(np.ones_like(t))


def warmup_linear_decay(step: Steps, total: int, warmup: float = 0.1) -> Steps:
    """Paper default (G.3): linear warmup over ``warmup·total`` steps, then linear decay to 0.

    Multiplier ``(t+1)/W`` for ``t < W``, then ``(total-t)/(total-W)``; see the module
    docstring for why the ramp is read at ``t+1``. ``warmup`` is a fraction of ``total``.
    """
    t = _steps(step)
    w = _warmup_steps(total, warmup)
    return _out(_warmup_then(t, total, w, lambda p: 1.0 - p))


def warmup_cosine(step: Steps, total: int, warmup: float) -> Steps:
    """Linear warmup over ``warmup·total`` steps, then cosine decay ``(1+cos(π·p))/2`` to 0.

    ``p = (t-W)/(total-W)`` is the decay progress (the ResNet setup of G.4 uses ``warmup=0.01``).
    """
    t = _steps(step)
    w = _warmup_steps(total, warmup)
    return _out(_warmup_then(t, total, w, lambda p: 0.5 * (1.0 + np.cos(np.pi * p))))


def exp_warmup(step: Steps, width_mult: float, length: float) -> Steps:
    """Exp-increasing extra warmup factor, Eq 14: ``m^min(0, t/T_W - 1)``.

    ``m = width_mult`` is the width multiplier (1/m at step 0), ``T_W = length`` the number of
    steps until the factor reaches 1 (the paper's ``exp50`` uses ``T_W = total/2``).
    """
    t = _steps(step)
    if not width_mult >= 1.0:
        raise ValueError(f"width_mult: must be >= 1, got {width_mult!r}")
    if not length > 0:
        raise ValueError(f"length: must be > 0 steps, got {length!r}")
    return _out(np.power(float(width_mult), np.minimum(0.0, t / length - 1.0)))


def decay_away_warmup(lrs: Sequence[float] | np.ndarray, weight_decay: float, width_mult: float) -> np.ndarray:
    """Decay-away extra warmup factor, Eq 15, for each step of a given LR sequence.

    Entry ``t`` is ``(1 + (m²-1)·∏_{τ<t} (1-η_τ·λ)²)^(-1/2)``: ``η_τ`` is the absolute base LR of
    step τ (peak LR × base multiplier, *without* this factor), ``λ = weight_decay`` (PyTorch
    AdamW, decay ``η·λ`` per step) and ``m = width_mult``. The empty product makes entry 0 = 1/m;
    it is Eq 13's ``ρ0 = ρ∞`` warmup effect with the decay accumulated along the schedule.
    """
    eta = np.asarray(lrs, dtype=float)
    if eta.ndim != 1 or eta.size == 0:
        raise ValueError(f"lrs: must be a non-empty 1-D sequence, got shape {eta.shape}")
    if not np.all(np.isfinite(eta)) or np.any(eta < 0):
        raise ValueError("lrs: must be finite and >= 0")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay: must be >= 0, got {weight_decay!r}")
    if not width_mult >= 1.0:
        raise ValueError(f"width_mult: must be >= 1, got {width_mult!r}")
    if np.any(eta * weight_decay >= 1.0):
        raise ValueError("lrs: every lr·weight_decay must be < 1 (the decay factor 1-η·λ must stay positive)")
    log_decay = 2.0 * np.log1p(-eta * weight_decay)
    log_prod = np.concatenate([[0.0], np.cumsum(log_decay)[:-1]])  # ∏ over τ < t
    return (1.0 + (width_mult**2 - 1.0) * np.exp(log_prod)) ** -0.5


def per_step(values: Sequence[float] | np.ndarray) -> Callable[[Steps], Steps]:
    """Turn a precomputed per-step array (e.g. ``decay_away_warmup``) into a schedule function.

    Steps past the end hold the last value (only the loop's final ``scheduler.step()`` asks).
    """
    table = np.asarray(values, dtype=float)
    if table.ndim != 1 or table.size == 0:
        raise ValueError(f"values: must be a non-empty 1-D sequence, got shape {table.shape}")

    def schedule(step: Steps) -> Steps:
        t = _steps(step)
        return _out(table[np.minimum(t.astype(int), table.size - 1)])

    return schedule


def combine(*factors: Factor) -> Callable[[Steps], Steps]:
    """The product of schedules: ``combine(f, g)(t) = f(t)·g(t)`` (arrays go through ``per_step``).

    Example, the paper's ``decayaway`` run (Fig 6 right) at ``m = 16``::

        base = functools.partial(warmup_linear_decay, total=T)
        factor = decay_away_warmup(lr * base(np.arange(T)), weight_decay=0.1, width_mult=16)
        scheduler = lambda_lr(optimizer, combine(base, factor))
    """
    if not factors:
        raise ValueError("factors: give at least one schedule")
    fns = [f if callable(f) else per_step(f) for f in factors]

    def schedule(step: Steps) -> Steps:
        out = fns[0](step)
        for fn in fns[1:]:
            out = out * fn(step)
        return out

    return schedule


def lambda_lr(optimizer: torch.optim.Optimizer, schedule: Factor, last_step: int = -1) -> LambdaLR:
    """A ``LambdaLR`` that multiplies every group's own (width-scaled) LR by ``schedule(t)``.

    ``LambdaLR`` sets ``lr = initial_lr × f(t)``, where ``initial_lr`` is copied from the group's
    ``lr`` at construction (when absent), so per-group scales survive: build the param groups
    with their scaled LRs first, then call this. ``schedule`` is a function of the step or a
    per-step array. ``last_step`` is the index of the last completed step when resuming
    (``LambdaLR``'s ``last_epoch``); the default -1 starts at step 0.
    """
    from torch.optim.lr_scheduler import LambdaLR

    fn = schedule if callable(schedule) else per_step(schedule)

    def multiplier(step: int) -> float:
        return float(fn(step))

    return LambdaLR(optimizer, multiplier, last_epoch=last_step)


class ScheduleConfig(Strict):
    """LR multiplier per step; never overwrites a group's scaled LR."""

    name: Literal["warmup_linear_decay", "warmup_cosine", "constant"] = Field(
        "warmup_linear_decay", description="Base schedule (paper default: 10% linear warmup, linear decay to 0)."
    )
    warmup: float = Field(0.1, ge=0, le=1, description="Linear warmup length as a fraction of the run.")
    extra_warmup: Literal["none", "exp", "decay_away"] = Field(
        "none", description="Additional width-dependent warmup factor: Eq 14 (exp) or Eq 15 (decay_away)."
    )
    extra_warmup_length: float = Field(
        0.5, gt=0, le=1, description="Length T_W of the exp warmup (Eq 14) as a fraction of the run."
    )
    extra_warmup_width_mult: float | None = Field(
        None, ge=1, description="m in Eq 14/15; default: the model's width multiplier."
    )

    def multipliers(self, steps: int, *, lr: float, weight_decay: float, width_mult: float) -> np.ndarray:
        """The multiplier of every step: base schedule × the optional extra warmup (Eq 14 or 15).

        ``lr`` and ``weight_decay`` are the run's base (unscaled) η and λ, which Eq 15 needs;
        ``width_mult`` is the model's m unless ``extra_warmup_width_mult`` sets it.
        """
        t = np.arange(steps)
        base = {
            "constant": lambda: np.ones(steps),
            "warmup_cosine": lambda: warmup_cosine(t, steps, self.warmup),
            "warmup_linear_decay": lambda: warmup_linear_decay(t, steps, self.warmup),
        }[self.name]()
        m = self.extra_warmup_width_mult or width_mult
        if self.extra_warmup == "exp":
            return base * exp_warmup(t, m, max(1, round(self.extra_warmup_length * steps)))
        if self.extra_warmup == "decay_away":  # Eq 15 with the base (unscaled) η_t and λ
            return base * decay_away_warmup(lr * base, weight_decay, m)
        return base

    def build(self, optimizer: torch.optim.Optimizer, steps: int, *, lr: float, weight_decay: float,
              width_mult: float) -> LambdaLR:
        """A LambdaLR that multiplies each group's scaled LR by the step's multiplier."""
        return lambda_lr(optimizer, self.multipliers(steps, lr=lr, weight_decay=weight_decay, width_mult=width_mult))
