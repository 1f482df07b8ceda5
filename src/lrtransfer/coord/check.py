"""A coord check that goes further than mup's: activations, updates, alignment and weight-decay timescales.

``coord_check(build, widths, base_width, batches, loss, lr=..., weight_decay=...)`` trains ``build(w)`` for
every width on the same batches with `param_groups` (the width-scaled LR and weight decay of Eq 6-8) and
PyTorch AdamW, and records on the measured steps (0, 1, 2 and every ``every``-th):

- the RMS and mean absolute value (mup's ``l1``) of every leaf module's output, from forward hooks;
- every `AlignmentMonitor` metric of each Linear/Conv2d: α_W, α_ΔW (Eq 2), the alignment ratio and
  ‖ΔY‖/‖Y‖ = (α_ΔW/α_W)·‖ΔW‖/‖W‖ (Eq 4), with the norms they are ratios of;
- the loss and each layer's gradient norm, LR and weight decay at that step (`lrtransfer.coord.run`).

`CoordCheck.flags` then reads these per layer (see `lrtransfer.coord.flags`): activations and
updates that grow or shrink with width (mup's test), the alignment ratio against the √m of Eq 5, and
how many weight-decay timescales 2·η·λ·T (Eq 33-36) the planned run spans at each width.
"""

from __future__ import annotations

import functools
import glob
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from lrtransfer.coord import flags as coord_flags
from lrtransfer.coord import run as coord_run
from lrtransfer.roles import parameter_roles
from lrtransfer.scaling import param_groups

Batches = Callable[[int], tuple] | tuple | Iterable


@dataclass
class CoordCheck:
    """What `coord_check` measured: ``frame`` (tidy, one row per width, step and module), ``flags`` (one
    row per module), ``timescales`` (one row per width and module with parameters) and ``settings``."""

    frame: pd.DataFrame
    timescales: pd.DataFrame
    settings: dict
    flags: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.flags = coord_flags.flags(self.frame, self.timescales)

    def text(self) -> str:
        """The flags in plain English, one line per finding."""
        return coord_flags.text(self.flags, self.timescales, self.settings)

    def plot(self, save_to: str | Path) -> Path:
        """One figure (PNG, plus its numbers as CSV beside it): see `lrtransfer.plots.coord.plot_coord`."""
        from lrtransfer.plots.coord import plot_coord  # matplotlib only when a figure is asked for

        return plot_coord(self.frame, save_to)


def coord_check(build: Callable[[int], nn.Module], widths: Sequence[int], base_width: int, batches: Batches,
                loss: Callable[[object, object], torch.Tensor], *, lr: float, weight_decay: float,
                steps: int = 200, every: int = 10, lr_scaling: str = "mup", wd_scaling: str = "independent",
                fixed_lr: float | None = None, planned_steps: int | None = None,
                schedule: Callable | Sequence[float] | None = None, optimizer: str | Callable = "adamw",
                sample: float = 0.25, roles: Mapping[str, str] | None = None, seed: int | Sequence[int] = 0,
                device: str | torch.device = "cpu") -> CoordCheck:
    """Train ``build(width)`` at every width for ``steps`` steps and check how it scales with width.

    Args:
        build: the user's model builder, ``build(width) -> nn.Module``; ``build(base_width)`` is the
            reference whose shapes give every parameter's role and width multiplier (`parameter_roles`).
        widths: 2 or more widths, increasing, each >= ``base_width``.
        base_width: the width at which ``lr`` is the LR of every layer (m = width / base_width).
        batches: ``batches(step) -> (x, y)``, one fixed ``(x, y)`` (as mup's default), or an iterable
            of at least ``steps`` batches (read once, replayed at every width).
        loss: ``loss(model(x), y) -> scalar tensor``.
        lr, weight_decay, lr_scaling, wd_scaling, fixed_lr: the rule under test, as in `param_groups`.
        steps: training steps per width; every: measure every this many steps (plus steps 0, 1, 2).
        planned_steps: length T of the run being planned (default ``steps``), for the timescales.
        schedule: LR multiplier of the planned run, ``schedule(step)`` or one value per planned step
            (default constant); the check trains with its first ``steps`` values.
        optimizer: ``"adamw"`` (torch AdamW, betas (0.9, 0.95) as in the paper) or ``groups -> Optimizer``;
            the timescales assume PyTorch AdamW's decay 1 - η·λ per step.
        sample: fraction of each batch used as X by `AlignmentMonitor` (default 1/4, not the paper's 1/64:
            a coord check's batches are small, and α_W of a 1-sample X is noisy; lower it for big batches).
        roles: `param_groups` overrides (fnmatch pattern -> role).
        seed: torch seed set before each model is built; several seeds (mup's ``nseeds``) are pooled by
            the flags, which helps where init noise at small widths is near mup's tolerance.
        device: where to train.
    """
    widths, seeds = _check_args(widths, base_width, steps, every, planned_steps, seed)
    for name, fn in [("build", build), ("loss", loss)]:
        if not callable(fn):
            raise ValueError(f"{name}: expected a callable, got {type(fn).__name__}")
    planned = planned_steps or steps
    mult = _multipliers(schedule, planned)
    data = _batches(batches, steps)
    opts = dict(lr=lr, weight_decay=weight_decay, lr_scaling=lr_scaling, wd_scaling=wd_scaling, fixed_lr=fixed_lr)
    run = functools.partial(coord_run.train, data=data, loss=loss, steps=steps, every=every, mult=mult,
                            optimizer=optimizer, sample=sample, device=device)
    base = _build(build, base_width, seeds[0], device)
    # The base width runs last, with its roles read off a wider width, so every width labels each parameter alike.
    order = [w for w in widths if w != base_width] + [w for w in widths if w == base_width]
    frames, scales, diverged, reference = [], [], {}, None
    for width, s in [(w, s) for w in order for s in seeds]:
        ref = None if width == base_width else base
        model = _build(build, width, s, device) if ref is not None or s != seeds[0] else base  # no longer a reference
        infos = parameter_roles(model, ref, width_mult=1.0 if ref is None else None, roles=reference or roles)
        reference = reference or {glob.escape(n): i.role for n, i in infos.items()}
        groups = param_groups(model, ref, width_mult=1.0 if ref is None else None, roles=reference, **opts)
        if s == seeds[0]:  # before training: the scheduler rewrites each group's lr in place
            scales.append(_timescales(groups, infos, model, mult).assign(width=width))
        frame, diverged[(width, s)] = run(model, groups, infos)
        frames.append(frame.assign(width=width, width_mult=width / base_width, seed=s))
    settings = dict(widths=widths, base_width=base_width, steps=steps, planned_steps=planned, seeds=seeds,
                    diverged={k: v for k, v in diverged.items() if v is not None}, **opts)
    return CoordCheck(_tidy(frames), _tidy(scales), settings)


def _check_args(widths, base_width, steps, every, planned_steps, seed) -> tuple[list[int], list[int]]:
    """Validate the counts, widths and seeds; one ValueError naming the argument."""
    for name, value in [("base_width", base_width), ("steps", steps), ("every", every)]:
        _check_count(name, value)
    if planned_steps is not None:
        _check_count("planned_steps", planned_steps)
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) < 2:
        raise ValueError(f"widths: give 2 or more widths, got {widths!r}")
    for w in widths:
        _check_count("widths", w)
    if any(b <= a for a, b in zip(widths, widths[1:])):
        raise ValueError(f"widths: must be increasing without duplicates, got {list(widths)}")
    if widths[0] < base_width:
        raise ValueError(f"widths: {widths[0]} is less than base_width {base_width}")
    seeds = [seed] if isinstance(seed, numbers.Integral) else list(seed) if isinstance(seed, Sequence) else None
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(v, numbers.Integral) for v in seeds):
        raise ValueError(f"seed: expected an int or distinct ints, got {seed!r}")
    return [int(w) for w in widths], [int(v) for v in seeds]


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")


def _multipliers(schedule, planned: int) -> np.ndarray:
    """The LR multiplier of each planned step, ``η_t = group lr × multiplier[t]``."""
    if schedule is None:
        return np.ones(planned)
    values = np.asarray([schedule(t) for t in range(planned)] if callable(schedule) else schedule, dtype=float)
    if values.shape != (planned,):
        raise ValueError(f"schedule: needs one multiplier per planned step ({planned}), got shape {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("schedule: multipliers must be finite and >= 0")
    return values


def _batches(batches: Batches, steps: int) -> Callable[[int], tuple]:
    """``step -> (x, y)``, the same sequence at every width."""
    if callable(batches):
        return batches
    if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], torch.Tensor):
        return lambda step: batches
    if not isinstance(batches, Iterable):
        raise ValueError(f"batches: expected batches(step), one (x, y) or an iterable, got {type(batches).__name__}")
    cached = []
    for batch in batches:
        cached.append(batch)
        if len(cached) == steps:
            return cached.__getitem__
    raise ValueError(f"batches: yielded {len(cached)} batches, steps={steps} needs {steps}")


def _build(build: Callable[[int], nn.Module], width: int, seed: int, device) -> nn.Module:
    """``build(width)`` right after ``torch.manual_seed(seed)``, in train mode on ``device``."""
    torch.manual_seed(seed)
    model = build(width)
    if not isinstance(model, nn.Module):
        raise ValueError(f"build: returned {type(model).__name__} for width {width}, expected an nn.Module")
    return model.to(device).train()


def _timescales(groups, infos, model, mult: np.ndarray) -> pd.DataFrame:
    """Weight-decay timescales 2·λ·Σ_t η_t of the planned run for each module with parameters (Eq 33, 36).

    Under PyTorch AdamW the weight RMS relaxes to equilibrium as ∏(1 - η_t·λ)² ≈ exp(-2λ·Σ η_t) (Eq 31-33),
    so this count is the number of e-folds of the init's share of ρ²; ``η_t`` is the group's width-scaled LR
    times the planned schedule's multiplier.
    """
    by_param = {name: g for g in groups for name in g["param_names"]}
    rows = []
    for name, (_, role, first) in coord_run.leaves(model, infos).items():
        if first is not None:
            g = by_param[first]
            count = 2.0 * g["weight_decay"] * float(np.sum(g["lr"] * mult))
            rows.append({"layer": name, "role": role, "lr": g["lr"], "weight_decay": g["weight_decay"],
                         "planned_steps": len(mult), "timescales": count})
    return pd.DataFrame(rows)


def _tidy(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One frame, width-first columns, sorted by width (then step when present) in model order."""
    df = pd.concat(frames, ignore_index=True)
    lead = [c for c in ("width", "width_mult", "seed", "step", "layer", "role") if c in df]
    df = df[lead + [c for c in df.columns if c not in lead]]
    keys = ["width", "seed", "step"] if "step" in df else ["width"]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def coord_check_spec(spec, steps: int = 200, every: int = 10, arm: str | None = None) -> CoordCheck:
    """`coord_check` of a sweep spec's built-in model at the spec's widths (`lrtransfer check`).

    The rule of ``arm`` (default: ``independent`` if swept, else the first arm), the base config's
    LR, weight decay and data, and its planned length and schedule for the timescales. A spec of a
    user objective has no model builder here: call `coord_check` with one from Python.
    """
    from lrtransfer.config import RunConfig, apply_overrides, validate
    from lrtransfer.sweep.spec import load_spec, width_of

    spec = load_spec(spec)
    arms = spec.arm_overrides()
    arm = arm or ("independent" if "independent" in arms else next(iter(arms)))
    if arm not in arms:
        raise ValueError(f"arm: {arm!r} is not one of {'|'.join(arms)}")
    raw = apply_overrides(spec.base.raw(), arms[arm])
    base = validate(raw)
    if not isinstance(base, RunConfig):
        raise ValueError("spec: base.objective names a user objective, which has no model builder here; call "
                         "lrtransfer.coord_check(build, widths, ...) with your builder from Python")
    widths = [width_of(base.model.base_width, m, "widths") for m in spec.widths]
    configs = {w: validate(apply_overrides(raw, {"model.width": w})) for w in widths}
    data, run, oc = base.data.build(), base.run, base.optim
    return coord_check(lambda w: configs[w].model.build(), widths, base.model.base_width,
                       lambda step: data.train_batch(step, run.batch_size, run.seed), data.loss,
                       lr=oc.lr, weight_decay=oc.weight_decay, lr_scaling=oc.lr_scaling, wd_scaling=oc.wd_scaling,
                       fixed_lr=oc.fixed_lr, steps=min(steps, run.steps), every=every, planned_steps=run.steps,
                       schedule=base.lr_multipliers(), seed=run.seed)
