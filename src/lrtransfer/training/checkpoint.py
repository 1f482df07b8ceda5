"""Checkpoints that make a killed run resume bit for bit: model, optimizer, scheduler, RNG, step."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"


def save(folder: Path, *, step: int, model: torch.nn.Module, optimizer, scheduler) -> Path:
    """Write atomically (temp file + rename), so a kill mid-write leaves the previous checkpoint intact."""
    path = folder / CHECKPOINT
    tmp = path.with_suffix(".tmp")
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load(folder: Path) -> dict[str, Any] | None:
    """The last checkpoint in `folder`, loaded with `weights_only=True`, or None."""
    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def restore(state: dict[str, Any], *, model: torch.nn.Module, optimizer, scheduler) -> int:
    """Load a checkpoint into live objects; returns the step to continue from."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])
