"""Checkpoints that make a killed run resume bit for bit: model, optimizer, scheduler, RNG, step.

A run folder keeps two checkpoints, each with its sha256 beside it (``NAME.sha256``, the hex digest
of the file's bytes): ``checkpoint.pt`` (the latest) and ``checkpoint.prev.pt`` (the one before).
`save` makes the latest the previous one (a hard link: no copy), then writes the new one and its
checksum atomically (`lrtransfer.records.atomic`: temp file, fsync, rename). A kill at any moment leaves
at least one of the two whole and matching its checksum.

`load` verifies before it trusts: a latest checkpoint that is empty, truncated, has flipped bytes,
has no checksum, or fails ``torch.load(weights_only=True)`` is moved aside (``NAME.bad``) and the
previous one is used, else the run starts clean; either way one line is logged saying which file,
why and what happens instead. No latest checkpoint means a clean start (a previous one left over
from an earlier run of the folder is removed, never resumed).
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import torch

from lrtransfer.records import atomic

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
CHECKSUM = ".sha256"  # suffix of the checksum file beside each checkpoint
KEYS = ("step", "model", "optimizer", "scheduler", "torch_rng")
log = logging.getLogger("lrtransfer.checkpoint")


def save(folder: Path, *, step: int, model: torch.nn.Module, optimizer, scheduler) -> Path:
    """Write the checkpoint of `step`, keeping the last one as ``checkpoint.prev.pt``; returns its path.
    A failed write (a full disk) raises and leaves the last checkpoint as it was."""
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    return save_state(folder, state)


def save_state(folder: Path, state: dict[str, Any], name: str = CHECKPOINT) -> Path:
    """`save` of any state dict (tensors, numbers, strings, containers) as ``folder/name``, with its
    checksum and the previous one kept (a user objective's `Trial.save`)."""
    folder = Path(folder)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    current, previous = folder / name, folder / _previous(name)
    if current.is_file():  # checkpoint first, then its checksum: every moment in between is covered by `load`
        atomic.copy(current, previous)
        if _sum_path(current).is_file():
            atomic.copy(_sum_path(current), _sum_path(previous))
    atomic.write_bytes(current, data)
    atomic.write_text(_sum_path(current), hashlib.sha256(data).hexdigest() + "\n")
    return current


def load(folder: Path, name: str = CHECKPOINT, keys: tuple[str, ...] = KEYS) -> dict[str, Any] | None:
    """The latest checkpoint in `folder` that verifies (see the module doc), loaded on the CPU with
    ``weights_only=True``, or None for a clean start. Also removes temp files of killed writes.
    ``name`` and ``keys``: the file and the keys its state must have (a `save_state` file)."""
    folder = Path(folder)
    current, previous = folder / name, folder / _previous(name)
    for path in (current, previous, _sum_path(current), _sum_path(previous)):
        atomic.remove_stale(path)
    (folder / "checkpoint.tmp").unlink(missing_ok=True)  # left by a killed write of earlier versions
    if not current.is_file():
        _remove(previous)
        return None
    state, why = verified(current, keys)
    if state is not None:
        return state
    _set_aside(current)
    fallback, why_not = verified(previous, keys)
    if fallback is None:
        log.warning("checkpoint: %s %s and %s %s; starting from step 0", current, why, previous.name, why_not)
        _set_aside(previous)
        _remove(current)
        _remove(previous)
        return None
    log.warning("checkpoint: %s %s; resuming from %s (step %s)", current, why, previous.name, fallback.get("step", "?"))
    atomic.copy(previous, current)  # the previous one becomes the latest again: the next save keeps it
    atomic.copy(_sum_path(previous), _sum_path(current))
    return fallback


def verified(path: Path, keys: tuple[str, ...] = KEYS) -> tuple[dict[str, Any] | None, str]:
    """(state, "") for a checkpoint file that matches its checksum and loads, else (None, why)."""
    if not path.is_file():
        return None, "is missing"
    data = path.read_bytes()
    if not data:
        return None, "is empty"
    expected = _sum_path(path).read_text().strip() if _sum_path(path).is_file() else ""
    if not expected:
        return None, f"has no checksum ({path.name}{CHECKSUM})"
    if hashlib.sha256(data).hexdigest() != expected:
        return None, "failed its checksum"
    try:  # a file that matches its checksum but is not ours (written by another tool, say)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types here; the message names the file either way
        return None, f"does not load ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    if not isinstance(state, dict) or any(k not in state for k in keys):
        return None, f"is not a checkpoint (expected the keys {list(keys)})"
    return state, ""


def restore(state: dict[str, Any], *, model: torch.nn.Module, optimizer, scheduler) -> int:
    """Load a checkpoint into live objects; returns the step to continue from."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def remove(folder: Path) -> None:
    """Delete every checkpoint file of `folder` (a forced re-run starts clean)."""
    folder = Path(folder)
    for name in (CHECKPOINT, PREVIOUS):
        _remove(folder / name)
        _remove(folder / f"{name}.bad")


def _previous(name: str) -> str:
    """``checkpoint.pt`` → ``checkpoint.prev.pt``."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.prev.{suffix}" if dot else f"{name}.prev"


def _sum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM)


def _set_aside(path: Path) -> None:
    """Keep a damaged checkpoint as ``NAME.bad`` (with its checksum) for a post-mortem; the last one wins."""
    for src in (path, _sum_path(path)):
        if src.is_file():
            atomic.copy(src, src.with_name(src.name.replace(path.name, path.name + ".bad")))


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    _sum_path(path).unlink(missing_ok=True)
