"""Width-aware LR and weight-decay scaling, as param groups for any torch optimizer.

When the width grows C -> mC, the layers whose fan-in grows (hidden, output) get

* LR (``lr_scaling``): ``"mup"`` η/m, the Adam rule of muP in standard parameterization
  (Eq. 6; Everett et al. 2024, Appendix G.2); ``"sqrt"`` η/√m (Appendix B.1); ``"none"`` η.
* weight decay (``wd_scaling``, PyTorch AdamW convention: each step shrinks W by 1 - η·λ):
  ``"standard"`` λ (Eq. 7, so η·λ shrinks with m); ``"independent"`` λ times the factor the
  LR was divided by (Eq. 8, keeps η·λ and hence the equilibrium update size of Eq. 3);
  ``"none"`` 0. ``"sqrt"`` + ``"independent"`` is the (η/√m, √m·λ) pair of Appendix B.1.

Input, gain and bias parameters keep ``fixed_lr`` (default η) and λ under every rule: the
"frozen" rate of the two-phase sweep in Appendix G.2. Roles listed in ``no_decay`` get λ = 0
(the paper decays everything except gains). Roles come from `lrtransfer.roles`.

Each group records ``role``, ``width_mult``, ``lr_scale`` (lr = base lr × lr_scale),
``wd_scale`` (weight_decay = base weight_decay × wd_scale) and ``param_names``. Torch keeps
extra group keys through ``state_dict()`` / ``load_state_dict()``, and ``param_names`` is the
key torch itself uses for named parameters, so every group carries it (torch requires all
groups of one optimizer to have names or none to).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

import pandas as pd
from torch import nn

from lrtransfer.roles import ROLES, SCALED_ROLES, ParamInfo, parameter_roles

__all__ = ["GROUP_COLUMNS", "LR_RULES", "WD_RULES", "LRRule", "ParamInfo", "WDRule", "describe_groups",
           "expected_shift", "param_groups", "parameter_roles", "role_hyperparams", "split_groups"]

LRRule = Literal["mup", "sqrt", "none"]  # the LR rules of hidden and output layers (Eq 6, App. B.1)
WDRule = Literal["none", "standard", "independent"]  # the weight-decay rules: none, Eq 7, Eq 8
WD_RULES: tuple[str, ...] = get_args(WDRule)

# What the LR of hidden and output layers is divided by at width multiplier m.
LR_RULES: dict[str, Callable[[float], float]] = {
    "mup": lambda m: m,  # Eq. 6: η = η_base / m for Adam
    "sqrt": math.sqrt,  # Appendix B.1: η / √m
    "none": lambda m: 1.0,
}


def expected_shift(lr_scaling: str, wd_scaling: str) -> float:
    """Octaves per width doubling by which the best base LR is expected to move under a rule pair:
    where the sweep of `lrtransfer.sweep` starts looking (spec ``bracket``), not a verdict.

    With weight decay, the shift that keeps the hidden layers' LR-WD product η·λ at its base value,
    which sets the equilibrium relative update (Eq 3): the base LR divided by d(m) = m^a (Eq 6)
    and λ multiplied by m^b (b = a independent, Eq 8; b = 0 standard, Eq 7) need η_base ∝ m^(a-b),
    so 0 for independent and +1 for μP with standard decay (the paper's "higher shifted base LR",
    Fig 5). Without weight decay, muP's own promise: the shift that keeps the Adam hidden LR at
    η/m, a - 1 (0 for ``mup``).
    """
    a = round(math.log2(LR_RULES[lr_scaling](2.0)), 12)
    if wd_scaling == "none":
        return a - 1.0
    return a - {"independent": a, "standard": 0.0}[wd_scaling]


def param_groups(
    model: nn.Module,
    base_model: nn.Module | None = None,
    *,
    width_mult: float | None = None,
    delta_model: nn.Module | None = None,
    lr: float,
    weight_decay: float,
    lr_scaling: str = "mup",
    wd_scaling: str = "independent",
    fixed_lr: float | None = None,
    no_decay: Sequence[str] = ("gain",),
    roles: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Param groups with width-scaled ``lr`` and ``weight_decay`` for any torch optimizer.

    Args:
        model: the model to train.
        base_model: the same architecture at the base width (roles by shape comparison).
        width_mult: instead of ``base_model``, the scalar m (roles by module type and order).
        delta_model: with ``base_model`` when ``model`` is the base width itself: the same
            architecture at any other width, showing which dimensions scale (roles stay those of
            every wider model; every m is 1).
        lr: base LR η_base of the hidden and output layers, the rate that transfers (Eq. 6).
        weight_decay: base weight decay λ (Eq. 7, 8).
        lr_scaling: ``mup`` (η/m, Eq. 6) | ``sqrt`` (η/√m, Appendix B.1) | ``none``.
        wd_scaling: ``independent`` (λ × LR divisor, Eq. 8) | ``standard`` (λ, Eq. 7) | ``none`` (0).
        fixed_lr: LR of input, gain and bias parameters (Appendix G.2, phase 2); default ``lr``.
        no_decay: roles whose weight decay is 0.
        roles: ``{fnmatch pattern: role}`` overrides; first match wins; unmatched patterns raise.

    Returns:
        One group per distinct (role, width_mult), in parameter order, each with ``params``,
        ``param_names``, the final ``lr`` and ``weight_decay``, and ``role``, ``width_mult``,
        ``lr_scale``, ``wd_scale``.
    """
    _check_hyperparams(lr, weight_decay, fixed_lr, lr_scaling, wd_scaling, no_decay)
    infos = parameter_roles(model, base_model, width_mult=width_mult, delta_model=delta_model, roles=roles)
    tensors = dict(model.named_parameters())
    groups: dict[tuple[str, float], dict[str, Any]] = {}
    for name, info in infos.items():
        key = (info.role, info.width_mult)
        if key not in groups:
            groups[key] = _group(info, lr, weight_decay, fixed_lr, lr_scaling, wd_scaling, no_decay)
        groups[key]["params"].append(tensors[name])
        groups[key]["param_names"].append(name)
    return list(groups.values())


def role_hyperparams(role: str, width_mult: float, *, lr: float, weight_decay: float, lr_scaling: str = "mup",
                     wd_scaling: str = "independent", fixed_lr: float | None = None,
                     no_decay: Sequence[str] = ("gain",)) -> tuple[float, float, float]:
    """``(lr, weight_decay, wd_scale)`` of a parameter with ``role`` at width multiplier m (Eq 6-8).

    The one place the rules live: `param_groups` builds its groups from it, and analysis code
    uses it to know the η and λ a layer actually got.
    """
    if role in SCALED_ROLES:
        divisor = float(LR_RULES[lr_scaling](width_mult))
        group_lr = float(lr) / divisor
        wd_scale = {"independent": divisor, "standard": 1.0, "none": 0.0}[wd_scaling]
    else:
        group_lr = float(lr if fixed_lr is None else fixed_lr)
        wd_scale = 0.0 if wd_scaling == "none" else 1.0
    if role in no_decay:
        wd_scale = 0.0
    return group_lr, float(weight_decay) * wd_scale, wd_scale


def _group(info: ParamInfo, lr, weight_decay, fixed_lr, lr_scaling, wd_scaling, no_decay) -> dict[str, Any]:
    """An empty group holding the final lr / weight_decay of ``info``'s role and width."""
    group_lr, group_wd, wd_scale = role_hyperparams(
        info.role, info.width_mult, lr=lr, weight_decay=weight_decay, lr_scaling=lr_scaling,
        wd_scaling=wd_scaling, fixed_lr=fixed_lr, no_decay=no_decay)
    return {
        "params": [],
        "param_names": [],
        "lr": group_lr,
        "weight_decay": group_wd,
        "role": info.role,
        "width_mult": float(info.width_mult),
        "lr_scale": group_lr / lr,
        "wd_scale": wd_scale,
    }


def split_groups(
    groups: Iterable[dict[str, Any]], roles: Sequence[str] = ("hidden",)
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split groups into (those whose role is in ``roles``, the rest), e.g. Muon + AdamW.

    >>> hidden, rest = split_groups(param_groups(model, width_mult=4, lr=1e-2, weight_decay=0.1))
    >>> opts = [torch.optim.Muon(hidden), torch.optim.AdamW(rest)]
    """
    roles = _check_roles("roles", roles)
    groups = list(groups)
    for i, group in enumerate(groups):
        if "role" not in group:
            raise ValueError(f"groups[{i}]: has no 'role'; build groups with param_groups()")
    selected = [g for g in groups if g["role"] in roles]
    if not selected:
        raise ValueError(f"roles: no group has a role in {roles}")
    return selected, [g for g in groups if g["role"] not in roles]


GROUP_COLUMNS = ("name", "role", "shape", "width_mult", "lr", "weight_decay", "lr_scale", "wd_scale")


def describe_groups(groups: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The table of parameter groups, one row per parameter (columns ``GROUP_COLUMNS``).

    ``groups``: from `param_groups`, or an optimizer's ``param_groups`` (then ``lr`` is the
    current rate, after any scheduler). Print it at the start of a run, as nanoGPT and torchtitan
    print theirs: ``print(describe_groups(opt.param_groups).to_string(index=False))``.
    """
    rows = []
    for i, group in enumerate(groups):
        missing = [key for key in ("role", "param_names", "params") if key not in group]
        if missing:
            raise ValueError(f"groups[{i}]: has no {missing[0]!r}; build groups with param_groups()")
        if len(group["param_names"]) != len(group["params"]):
            raise ValueError(f"groups[{i}]: has {len(group['params'])} params but {len(group['param_names'])} names")
        for name, p in zip(group["param_names"], group["params"]):
            rows.append({"name": name, "role": group["role"], "shape": tuple(p.shape),
                         **{key: group.get(key, math.nan) for key in GROUP_COLUMNS[3:]}})
    return pd.DataFrame(rows, columns=list(GROUP_COLUMNS))


def _check_hyperparams(lr, weight_decay, fixed_lr, lr_scaling, wd_scaling, no_decay) -> None:
    _check_number("lr", lr, positive=True)
    _check_number("weight_decay", weight_decay, positive=False)
    if fixed_lr is not None:
        _check_number("fixed_lr", fixed_lr, positive=True)
    if lr_scaling not in LR_RULES:
        raise ValueError(f"lr_scaling: {lr_scaling!r} is not one of {'|'.join(LR_RULES)}")
    if wd_scaling not in WD_RULES:
        raise ValueError(f"wd_scaling: {wd_scaling!r} is not one of {'|'.join(WD_RULES)}")
    _check_roles("no_decay", no_decay)


def _check_number(arg: str, value: object, *, positive: bool) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{arg}: must be a finite number {bound}, got {value!r}")


def _check_roles(arg: str, roles: object) -> tuple[str, ...]:
    if isinstance(roles, str) or not isinstance(roles, Iterable):
        raise TypeError(f"{arg}: expected a sequence of roles such as ('gain',), got {roles!r}")
    roles = tuple(roles)
    for role in roles:
        if role not in ROLES:
            raise ValueError(f"{arg}: {role!r} is not one of {'|'.join(ROLES)}")
    return roles
