"""Cost of fsync per checkpoint: `checkpoint.save` with its fsyncs vs the same save with fsync a no-op.

    python bench/fsync_cost.py [--repeats 15] [--dir .] [--threads 1]

Two checkpoints: the demo's widest language model (`lrtransfer demo`: the Shakespeare llama at 4 × 16
= width 64, depth 2, head_dim 16) and a bigger one (width 512, depth 4). Each has its AdamW state
filled by one training step. Saves with and without fsync alternate (in random order within each
pair) into a temporary folder under `--dir` — the file system the run folders live on matters: on
a tmpfs fsync costs nothing. A "save" is the whole `checkpoint.save`: serialise, link the previous
checkpoint, write the new one and its checksum (temp file, fsync, rename, fsync of the folder).
The cost of fsync is the median of the paired differences.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from lrtransfer.config import resolve
from lrtransfer.models import build_base_model, build_model, width_mult
from lrtransfer.records import checkpoint
from lrtransfer.training.setup import build_optimizer, build_scheduler

MODELS = {  # name → dotted overrides of the lm-shakespeare preset
    "demo width 64": ["model.width=64", "model.base_width=16", "model.head_dim=16", "model.depth=2"],
    "width 512, depth 4": ["model.width=512", "model.base_width=64", "model.head_dim=64", "model.depth=4"],
}


def parts(overrides: list[str]) -> dict:
    """Model, AdamW (state filled by one step) and schedule, as a run of that config builds them."""
    config = resolve(preset="lm-shakespeare", overrides=overrides)
    torch.manual_seed(0)
    model, m = build_model(config.model), width_mult(config.model)
    with torch.device("meta"):
        base = build_base_model(config.model)
    opt = build_optimizer(model, {"base_model": base}, config.optim)
    sched = build_scheduler(opt, config.schedule, config.run.steps, config.optim, m)
    tokens = torch.randint(0, config.model.vocab_size, (2, config.model.seq_len + 1))
    torch.nn.functional.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()
    opt.step()
    return {"model": model, "optimizer": opt, "scheduler": sched}


def timed_save(folder: Path, step: int, fsync: bool, p: dict) -> float:
    """Wall seconds of one `checkpoint.save`; with `fsync=False`, os.fsync does nothing."""
    patch = mock.patch("os.fsync") if not fsync else mock.patch.object(os, "fsync", os.fsync)
    with patch:
        start = time.perf_counter()
        checkpoint.save(folder, step=step, **p)
        return time.perf_counter() - start


def measure(folder: Path, p: dict, repeats: int, rng: random.Random) -> dict[str, float]:
    with_fsync, without = [], []
    timed_save(folder, 0, True, p)  # warm-up: the first save also creates the files
    for i in range(repeats):
        for fsync in rng.sample([True, False], 2):
            (with_fsync if fsync else without).append(timed_save(folder, i + 1, fsync, p))
    diffs = [a - b for a, b in zip(with_fsync, without)]
    return {"MB": (folder / checkpoint.CHECKPOINT).stat().st_size / 2**20,
            "with_ms": 1e3 * statistics.median(with_fsync), "without_ms": 1e3 * statistics.median(without),
            "fsync_ms": 1e3 * statistics.median(diffs)}


def filesystem(path: Path) -> str:
    """The type of the file system holding `path` (from /proc/mounts; '?' elsewhere)."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "?"
    path = str(path.resolve())
    best = max((m for m in mounts if path == m[0] or path.startswith(m[0].rstrip("/") + "/")),
               key=lambda m: len(m[0]), default=("", "?"))
    return best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--dir", type=Path, default=Path("."), help="where the temporary checkpoint folder goes")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix=".fsync-bench-", dir=args.dir))
    print(f"folder {folder} on {filesystem(folder)}; median of {args.repeats} paired saves; load {os.getloadavg()}")
    try:
        for name, overrides in MODELS.items():
            r = measure(folder, parts(overrides), args.repeats, random.Random(0))
            print(f"{name:>20}: checkpoint {r['MB']:7.2f} MB | save with fsync {r['with_ms']:8.1f} ms, "
                  f"without {r['without_ms']:8.1f} ms | fsync costs {r['fsync_ms']:7.1f} ms per checkpoint "
                  f"({100 * r['fsync_ms'] / r['without_ms']:.0f}% of a save without it)")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
