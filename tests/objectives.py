"""User objectives for the tests of `lrtransfer.Trial` / `lrtransfer.Study`: a model the project has
never seen (an MLP with a residual block) on the user's own synthetic data, in the user's own loop."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import nn

import lrtransfer


class ResidualMLP(nn.Module):
    """Not a built-in family: input projection, one residual hidden block, LayerNorm, readout."""

    def __init__(self, width: int, d_in: int = 8):
        super().__init__()
        self.proj = nn.Linear(d_in, width)
        self.block = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        h = self.proj(x)
        return self.head(self.norm(h + self.block(h)))


def data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, torch.sin(x.sum(1, keepdim=True)) + 0.1 * torch.randn(n, 1, generator=g)


def objective(trial: lrtransfer.Trial) -> None:
    """Train with the trial's param groups; log every step; crash once at `crash_at` if asked."""
    steps = trial.params.get("steps", 30)
    model, base = ResidualMLP(trial.width), ResidualMLP(trial.base_width)
    opt = torch.optim.AdamW(trial.param_groups(model, base), betas=(0.9, 0.95))
    monitor = trial.monitor(model)
    x, y = data()
    start = 0
    if (state := trial.load()) is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
    for step in range(start, steps):
        idx = torch.arange(step * 32, step * 32 + 32) % len(x)
        with monitor.step(step):
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad()
        trial.log(step, loss.item())
        if step + 1 == trial.params.get("save_at"):
            trial.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1})
            marker = trial.folder / "crashed-once"
            if trial.params.get("crash") and not marker.exists():
                marker.touch()
                raise KeyboardInterrupt  # like a kill: not an Exception, so the trial is not recorded
    with torch.no_grad():
        trial.finish(val_loss=nn.functional.mse_loss(model(x), y).item())


def contract(trial: lrtransfer.Trial) -> None:
    """Report the trial's attributes and what the study seeded, as summary values."""
    names = ("width", "base_width", "width_mult", "lr", "fixed_lr", "weight_decay", "lr_scaling", "wd_scaling",
             "seed", "phase", "arm")
    trial.log(0, 1.0)
    trial.finish(**{n: getattr(trial, n) for n in names}, folder_is_dir=trial.folder.is_dir(),
                 params=dict(trial.params), draws=[torch.rand(1).item(), float(np.random.rand()), random.random()])


def device_report(trial: lrtransfer.Trial) -> None:
    """Report the worker process and the GPUs the executor showed it."""
    trial.log(0, 1.0)
    trial.finish(pid=os.getpid(), cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))


def diverges(trial: lrtransfer.Trial) -> None:
    for step in range(10):
        trial.log(step, float("inf") if step == 3 else 1.0)


def fails(trial: lrtransfer.Trial) -> None:
    if trial.width > trial.base_width:
        raise RuntimeError("out of memory at this width (simulated)")
    trial.log(0, 1.0)


not_a_function = 3


def two_arguments(trial, extra) -> None: ...
