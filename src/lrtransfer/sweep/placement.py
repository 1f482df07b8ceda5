"""Where the runs of a sweep train: GPU slots for the local executor, GPU shares for Ray.

`Placement` is the typed config (``--gpus``, ``--runs-per-gpu``, ``--gpus-per-run``). For the local
executor `gpu_slots` lists the slots as pure data: one tuple of device ids (as
``CUDA_VISIBLE_DEVICES`` names them) per parallel run, one run per GPU by default, `runs_per_gpu`
runs sharing a GPU to pack small proxies, or `gpus_per_run` GPUs for a run that launches several
processes (``torchrun --nproc_per_node=2``). Slots go round-robin over the GPUs, so fewer workers
than slots still spread out. The local executor starts each worker process with a free slot's
``CUDA_VISIBLE_DEVICES`` (`lrtransfer.sweep.local`), so every run of that worker — the built-in
trainer, a user objective, a command it launches — sees its GPUs as ``cuda:0``, ``cuda:1``, ….
For Ray, `ray_options` asks for ``num_gpus=gpus_per_run`` (a fraction packs runs on a GPU) and Ray
sets ``CUDA_VISIBLE_DEVICES`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import Field, field_validator, model_validator

from lrtransfer.strict import ConfigError, Strict

VISIBLE = "CUDA_VISIBLE_DEVICES"


class Placement(Strict):
    """Which GPUs the runs of a sweep use (docs/at-scale.md, "GPUs")."""

    gpus: str | list[str] | None = Field(None, description="Local executor: auto (every visible GPU; none on a "
                                         "machine without one) | none (CPU only) | device ids '0,1,…'. "
                                         "Default: auto.")
    runs_per_gpu: int = Field(1, ge=1, description="Local executor: runs sharing one GPU (small proxies).")
    gpus_per_run: float | None = Field(None, gt=0, description="GPUs of one run: a whole number on the local "
                                       "executor (a multi-process command); Ray: num_gpus, a fraction packs runs.")

    @field_validator("gpus", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> Any:
        if isinstance(v, (int, list, tuple)):
            v = [str(g) for g in ([v] if isinstance(v, int) else v)]
        if isinstance(v, str) and v not in ("auto", "none"):
            v = [g.strip() for g in v.split(",")]
        if isinstance(v, list) and (not v or "" in v or len(set(v)) < len(v)):
            raise ValueError("expected auto, none or distinct device ids like 0,1,2")
        return v

    @field_validator("gpus_per_run")
    @classmethod
    def _whole_above_one(cls, v: float | None) -> float | None:
        if v is not None and v > 1 and not float(v).is_integer():
            raise ValueError(f"more than one GPU must be a whole number, got {v}")
        return v

    @model_validator(mode="after")
    def _pack_or_span(self) -> Placement:
        if self.runs_per_gpu > 1 and (self.gpus_per_run or 1) > 1:
            raise ValueError("runs_per_gpu: packs runs on one GPU; it cannot be combined with gpus_per_run > 1")
        return self

    def local_slots(self, environ: Mapping[str, str] | None = None,
                    count: Callable[[], int] | None = None) -> list[tuple[str, ...]]:
        """The local executor's slots ([]: no GPU, the runs train on CPU as before)."""
        if self.gpus_per_run is not None and not float(self.gpus_per_run).is_integer():
            raise ConfigError(f"gpus_per_run: the local executor gives a run whole GPUs (got {self.gpus_per_run}); "
                             "pack runs on a GPU with runs_per_gpu")
        if self.gpus == "none":
            return []
        gpus = self.gpus if isinstance(self.gpus, list) else visible_gpus(environ, count)
        if not gpus and self.gpus in (None, "auto") and (self.runs_per_gpu > 1 or self.gpus_per_run):
            raise ConfigError("gpus: auto finds no GPU on this machine, so runs_per_gpu/gpus_per_run cannot apply")
        return gpu_slots(gpus, self.runs_per_gpu, int(self.gpus_per_run or 1))

    def check_ray(self) -> None:
        """Ray assigns the devices: only `gpus_per_run` applies."""
        if self.gpus is not None or self.runs_per_gpu != 1:
            name = "gpus" if self.gpus is not None else "runs_per_gpu"
            raise ConfigError(f"{name}: only for the local executor; on Ray give gpus_per_run (e.g. 0.25 packs 4 "
                             "runs on a GPU)")


def visible_gpus(environ: Mapping[str, str] | None = None, count: Callable[[], int] | None = None) -> list[str]:
    """The GPUs this process may use: the entries of its ``CUDA_VISIBLE_DEVICES`` when set (ids or
    UUIDs; a negative id hides the ones after it, as CUDA reads it), else ``0 … count()-1``
    (`torch.cuda.device_count`, which asks NVML and leaves CUDA uninitialised here)."""
    environ = os.environ if environ is None else environ
    if VISIBLE in environ:
        ids = []
        for entry in (e.strip() for e in environ[VISIBLE].split(",")):
            if not entry or (entry.lstrip("-").isdigit() and int(entry) < 0):
                break
            ids.append(entry)
        return ids
    if count is None:
        import torch

        count = torch.cuda.device_count
    return [str(i) for i in range(count())]


def gpu_slots(gpus: Sequence[str], runs_per_gpu: int = 1, gpus_per_run: int = 1) -> list[tuple[str, ...]]:
    """One slot per parallel run: `gpus` in groups of `gpus_per_run` (a remainder stays unused),
    each group `runs_per_gpu` times, round-robin (group 0, 1, …, then each a second time)."""
    if runs_per_gpu < 1 or gpus_per_run < 1:
        raise ConfigError(f"runs_per_gpu/gpus_per_run: must be >= 1, got {runs_per_gpu}/{gpus_per_run}")
    if gpus and gpus_per_run > len(gpus):
        raise ConfigError(f"gpus_per_run: {gpus_per_run} GPUs per run, but only {len(gpus)} GPUs ({','.join(gpus)})")
    groups = [tuple(gpus[i:i + gpus_per_run]) for i in range(0, len(gpus) - gpus_per_run + 1, gpus_per_run)]
    return [group for _ in range(runs_per_gpu) for group in groups]


def ray_options(threads: int, gpus_per_run: float | None) -> dict[str, Any]:
    """The resources of one Ray task: `threads` CPUs, and `gpus_per_run` GPUs when given."""
    return {"num_cpus": threads, **({"num_gpus": gpus_per_run} if gpus_per_run else {})}


def check_cluster(resources: Mapping[str, float], gpus_per_run: float | None) -> None:
    """Refuse GPU tasks a cluster without GPUs would keep pending forever."""
    if gpus_per_run and resources.get("GPU", 0) < gpus_per_run:
        raise ConfigError(f"gpus_per_run: {gpus_per_run} GPUs per run, but the Ray cluster has "
                         f"{resources.get('GPU', 0):g} GPUs")
