"""Build everything a run needs from its config: each component config builds its own part."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from lrtransfer.config import RunConfig
from lrtransfer.data import Dataset
from lrtransfer.scaling import parameter_roles
from lrtransfer.training.distributed import Dist


@dataclass
class Parts:
    model: torch.nn.Module  # what the loop calls (DDP-wrapped under torchrun)
    raw_model: torch.nn.Module  # the bare model: checkpoints, evaluation
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    data: Dataset
    roles: dict[str, str]
    dist: Dist


def build_parts(config: RunConfig, device: torch.device, dist: Dist) -> Parts:
    torch.manual_seed(config.run.seed)
    model = config.model.build().to(device)
    reference = role_reference(config)
    roles = {name: info.role for name, info in parameter_roles(model, **reference).items()}
    optimizer = config.optim.build(model, reference)
    oc = config.optim
    scheduler = config.schedule.build(optimizer, config.run.steps, lr=oc.lr, weight_decay=oc.weight_decay,
                                      width_mult=config.model.width_mult)
    wrapped = DistributedDataParallel(model) if dist.enabled else model
    return Parts(model=wrapped, raw_model=model, optimizer=optimizer, scheduler=scheduler, data=config.data.build(),
                 roles=roles, dist=dist)


def role_reference(config: RunConfig) -> dict:
    """What roles are read from: base shapes, or (at 1×, where nothing differs) the documented
    positional inference with m = 1, which agrees with the base-shape roles on the built-in models."""
    if config.model.width_mult == 1:
        return {"width_mult": 1.0}
    with torch.device("meta"):  # base shapes only: no memory, no RNG draws
        return {"base_model": config.model.build_base()}

