"""Build everything a run needs from its config: model (+ base shapes), data, optimizer, schedule."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from lrtransfer import schedules
from lrtransfer.config import OptimConfig, RunConfig, ScheduleConfig
from lrtransfer.data import build_dataset
from lrtransfer.models import build_base_model, build_model, width_mult
from lrtransfer.scaling import param_groups, parameter_roles
from lrtransfer.training.distributed import Dist


@dataclass
class Parts:
    model: torch.nn.Module  # what the loop calls (DDP-wrapped under torchrun)
    raw_model: torch.nn.Module  # the bare model: checkpoints, evaluation
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    data: object
    roles: dict[str, str]
    dist: Dist
    eval_batch_size: int
    items_per_sample: int
    items_name: str
    width: int
    width_mult: float


def build_parts(config: RunConfig, device: torch.device, dist: Dist) -> Parts:
    torch.manual_seed(config.run.seed)
    model = build_model(config.model).to(device)
    m = width_mult(config.model)
    ref = _reference(config, m)
    roles = {name: info.role for name, info in parameter_roles(model, **ref).items()}
    optimizer = build_optimizer(model, ref, config.optim)
    scheduler = build_scheduler(optimizer, config.schedule, config.run.steps, config.optim, m)
    data = build_dataset(config.data)
    wrapped = DistributedDataParallel(model) if dist.enabled else model
    lm = data.task == "lm"
    return Parts(
        model=wrapped, raw_model=model, optimizer=optimizer, scheduler=scheduler, data=data, roles=roles,
        dist=dist, eval_batch_size=config.run.batch_size,
        items_per_sample=config.data.seq_len if lm else 1, items_name="tokens" if lm else "samples",
        width=config.model.width, width_mult=m,
    )


def _reference(config: RunConfig, m: float) -> dict:
    """What roles are read from: base shapes, or (at 1×, where nothing differs) the documented
    positional inference with m = 1, which agrees with the base-shape roles on the built-in models."""
    if m == 1:
        return {"width_mult": 1.0}
    with torch.device("meta"):  # base shapes only: no memory, no RNG draws
        return {"base_model": build_base_model(config.model)}


def build_optimizer(model: torch.nn.Module, ref: dict, oc: OptimConfig) -> torch.optim.Optimizer:
    """Width-scaled param groups (`lrtransfer.scaling`) fed to a stock torch optimizer."""
    groups = param_groups(
        model, **ref, lr=oc.lr, weight_decay=oc.weight_decay, lr_scaling=oc.lr_scaling,
        wd_scaling=oc.wd_scaling, fixed_lr=oc.fixed_lr, no_decay=oc.no_decay,
    )
    if oc.name == "sgd":
        return torch.optim.SGD(groups, lr=oc.lr, momentum=oc.betas[0])
    return torch.optim.AdamW(groups, lr=oc.lr, betas=oc.betas, eps=oc.eps, foreach=oc.foreach)


def lr_multipliers(sc: ScheduleConfig, steps: int, oc: OptimConfig, m: float) -> np.ndarray:
    """The multiplier of every step: base schedule × the optional extra warmup (Eq 14 or 15)."""
    t = np.arange(steps)
    base = {
        "constant": lambda: np.ones(steps),
        "warmup_cosine": lambda: schedules.warmup_cosine(t, steps, sc.warmup),
        "warmup_linear_decay": lambda: schedules.warmup_linear_decay(t, steps, sc.warmup),
    }[sc.name]()
    m = sc.extra_warmup_width_mult or m
    if sc.extra_warmup == "exp":
        return base * schedules.exp_warmup(t, m, max(1, round(sc.extra_warmup_length * steps)))
    if sc.extra_warmup == "decay_away":  # Eq 15 with the base (unscaled) η_t and λ
        return base * schedules.decay_away_warmup(oc.lr * base, oc.weight_decay, m)
    return base


def build_scheduler(optimizer, sc: ScheduleConfig, steps: int, oc: OptimConfig, m: float):
    """A LambdaLR that multiplies each group's scaled LR by the step's multiplier (never overwrites it)."""
    return schedules.lambda_lr(optimizer, lr_multipliers(sc, steps, oc, m))


def group_lr_names(optimizer: torch.optim.Optimizer) -> list[str]:
    """`lr/<role>` per group, with the width multiplier added where a role has several groups."""
    roles = [g.get("role", f"group{i}") for i, g in enumerate(optimizer.param_groups)]
    names = []
    for role, g in zip(roles, optimizer.param_groups):
        names.append(f"lr/{role}" if roles.count(role) == 1 else f"lr/{role}@m{g.get('width_mult', 1):g}")
    return names
