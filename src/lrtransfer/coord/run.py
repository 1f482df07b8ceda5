"""One width's run of a coord check: the plain training loop (forward, backward, step) and its probes.

On a measured step `AlignmentMonitor` records the Eq 2/4 metrics of every Linear/Conv2d, forward hooks
keep the RMS and mean |y| (mup's ``l1``) of every leaf module's first output with grad enabled, and the
loop notes each module's gradient norm, LR and weight decay. Rows join on (step, layer).

Sharded (FSDP2 ``fully_shard``) models: run the check on every rank, with ``build`` returning the
sharded model and ``data(step)`` this rank's share of the global batch. Activation statistics are
sums over ranks (of y², |y| and the element count), gradient norms are those of the whole DTensor,
the loss is the mean over ranks, and the monitor reduces as documented in `lrtransfer.monitor`: rank
0's frame is the unsharded model's on the global batch (other ranks' frames lack the monitor's metrics).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Mapping

import pandas as pd
import torch
from torch import nn

from lrtransfer import sharded
from lrtransfer.monitor import AlignmentMonitor
from lrtransfer.schedules import lambda_lr

EARLY_STEPS = (0, 1, 2)  # mup's coord check looks at the forwards of its first 3 steps
ACTIVATIONS = ("activation_rms", "activation_l1")


def optimizer_for(optimizer: str | Callable, groups: list[dict]) -> torch.optim.Optimizer:
    """Torch AdamW with the paper's betas (0.9, 0.95), or the user's ``optimizer(groups)``."""
    if callable(optimizer):
        return optimizer(groups)
    if optimizer != "adamw":
        raise ValueError(f"optimizer: {optimizer!r} is not 'adamw' or a callable groups -> optimizer")
    return torch.optim.AdamW(groups, betas=(0.9, 0.95))


def train(model, groups, infos, *, data, loss, steps, every, mult, optimizer, sample, device):
    """One width's run: (tidy frame of the measured steps, first step whose loss is not finite, or None)."""
    opt = optimizer_for(optimizer, groups)
    scheduler = lambda_lr(opt, mult)  # the planned schedule's first `steps` multipliers
    monitor = AlignmentMonitor(model, every=1, sample=sample, roles=infos)  # entered on measured steps only
    modules = leaves(model, infos)
    rows = []
    for step in range(steps):
        x, y = (_to(t, device) for t in data(step))
        measured = step in EARLY_STEPS or step % every == 0
        acts: dict[str, torch.Tensor] = {}
        with contextlib.ExitStack() as stack:
            if measured:
                stack.enter_context(monitor.step(step))
                stack.enter_context(_activations(modules, acts))
            value = loss(model(x), y)
            value.backward()
            if measured:  # read before the step: the gradient and LR that made this step's ΔW
                grads = {n: _grad_norm(model, p) for n, (_, _, p) in modules.items() if p is not None}
                lrs = {name: g["lr"] for g in opt.param_groups for name in g["param_names"]}
            opt.step()
            opt.zero_grad(set_to_none=True)
        scheduler.step()
        value = sharded.mean_over_ranks(value).item()  # every rank sees the same loss, so all stop together
        if not math.isfinite(value):
            return _step_frame(rows, monitor), step
        if measured:
            rows.extend(_rows(step, value, _reduce(acts, modules, device), grads, modules, lrs, groups))
    return _step_frame(rows, monitor), None


def leaves(model: nn.Module, infos: Mapping) -> dict[str, tuple[nn.Module, str, str | None]]:
    """Leaf modules: name -> (module, role, name of the parameter whose LR/λ the module reports)."""
    leaves = {}
    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            # A tied weight is listed once, under its first name: the other module reports none.
            params = [f"{name}.{p}" for p, _ in module.named_parameters(recurse=False) if f"{name}.{p}" in infos]
            first = f"{name}.weight" if f"{name}.weight" in params else (params[0] if params else None)
            leaves[name] = (module, infos[first].role if first else "none", first)
    return leaves


@contextlib.contextmanager
def _activations(leaves: Mapping, out: dict[str, torch.Tensor]) -> Iterator[None]:
    """Forward hooks that keep (RMS, mean |y|) of each leaf's first output with grad on (mup's ``l1``)."""

    def hook(name, module, args, output):
        y = _first_tensor(output)
        if name in out or y is None or not torch.is_grad_enabled() or not y.is_floating_point():
            return
        y = y.detach().double()
        out[name] = torch.stack([y.square().sum(), y.abs().sum(), y.new_tensor(y.numel())])

    handles = [m.register_forward_hook(functools.partial(hook, n)) for n, (m, _, _) in leaves.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _reduce(sums: Mapping[str, torch.Tensor], leaves: Mapping, device) -> dict[str, torch.Tensor]:
    """(RMS, mean |y|) per leaf from its (Σy², Σ|y|, count) summed over ranks; leaves no rank ran are left out."""
    zero = torch.zeros(3, dtype=torch.float64, device=device)
    # Every rank stacks every leaf in module order, so the all-reduce lines up.
    total = sharded.sum_over_ranks(torch.stack([sums.get(n, zero).to(device) for n in leaves]))
    stats = dict(zip(leaves, torch.stack([(total[:, 0] / total[:, 2]).sqrt(), total[:, 1] / total[:, 2]], dim=1)))
    ran = dict(zip(leaves, (total[:, 2] > 0).tolist()))
    names = [*sums, *(n for n in leaves if n not in sums)]  # this rank's forward order first
    return {n: stats[n] for n in names if ran[n]}


def _first_tensor(output) -> torch.Tensor | None:
    """The module's output, or the first tensor of a tuple/list/dict output (e.g. attention's)."""
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, Mapping) else output if isinstance(output, (tuple, list)) else []
    return next((v for v in values if isinstance(v, torch.Tensor)), None)


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def _grad_norm(model: nn.Module, name: str) -> torch.Tensor:
    """‖∇‖ of parameter ``name`` (0 without a gradient): a zero-gradient step (e.g. behind a zero-init
    readout) moves W only by weight decay, so its alignment says nothing about Eq 5."""
    param = model.get_parameter(name)
    if param.grad is None:
        return torch.zeros((), dtype=torch.float64, device=param.device)
    return sharded.full_tensor(param.grad.detach().double().norm())  # a DTensor's: reduced over its shards


def _rows(step, loss_value, acts, grads, leaves, lrs, groups) -> list[dict]:
    """Activation rows of one measured step, with each module's gradient norm, LR and weight decay."""
    wd = {name: g["weight_decay"] for g in groups for name in g["param_names"]}
    names = list(acts)
    values = torch.stack([acts[n] for n in names]).cpu().tolist() if names else []
    grad = dict(zip(grads, torch.stack(list(grads.values())).cpu().tolist())) if grads else {}
    return [{"step": step, "layer": n, "role": leaves[n][1], "module": sharded.module_class(leaves[n][0]).__name__,
             "loss": loss_value, **dict(zip(ACTIVATIONS, v)), "grad_norm": grad.get(n, math.nan),
             "lr": lrs.get(leaves[n][2], math.nan), "weight_decay": wd.get(leaves[n][2], math.nan)}
            for n, v in zip(names, values)]


def _step_frame(rows: list[dict], monitor: AlignmentMonitor) -> pd.DataFrame:
    """Activations joined with the monitor's records on (step, layer); non-matrix modules get NaN metrics."""
    columns = ["step", "layer", "role", "module", "loss", *ACTIVATIONS, "grad_norm", "lr", "weight_decay"]
    acts = pd.DataFrame(rows, columns=columns)
    return acts.merge(monitor.frame().drop(columns="role"), on=["step", "layer"], how="left")
