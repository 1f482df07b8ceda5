"""The demo's training step, timed per width for design variants interleaved.

Usage: python bench/demo_step.py [--steps 150] [--threads 1] [--variants depth2-foreach depth2-fused depth1-fused]

Builds the demo's phase-2 runs (`lrtransfer demo`, independent arm, base LR 8e-3) at each width
and changes only what a variant names: ``depth1``/``depth2`` (``model.depth``) and
``fused``/``foreach`` (``optim.fused``). All variants of a width are trained side by side, one
step of each in turn, so that a shared machine's speed drifting (±15% over minutes here) hits each
alike; the first 20 steps are warm-up. Prints the median ms per full step (batch, forward,
backward, AdamW, zero_grad, scheduler, ``loss.item()``) and each variant's ratio to the first.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lrtransfer import sweep
from lrtransfer.config import apply_overrides, validate
from lrtransfer.study import study_spec
from lrtransfer.sweep.plan import phase2
from lrtransfer.training.distributed import init_distributed
from lrtransfer.training.setup import build_parts


def variant(config, name: str):
    depth, kernel = name.split("-")
    return validate(apply_overrides(config.to_dict(), {"model.depth": int(depth.removeprefix("depth")),
                                                       "optim.fused": kernel == "fused",
                                                       "optim.foreach": None if kernel == "fused" else True}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["depth2-foreach", "depth2-fused", "depth1-fused"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = sweep.load_spec(study_spec("demo"))
    runs = [r for r in phase2(spec, dict.fromkeys(spec.arm_overrides(), 8e-3))
            if r.arm == "independent" and r.lr == 8e-3]
    device, dist = torch.device("cpu"), init_distributed(torch.device("cpu"))
    for run in sorted(runs, key=lambda r: r.config.model.width):
        parts = {v: build_parts(variant(run.config, v), device, dist) for v in args.variants}
        times = {v: [] for v in args.variants}
        cfg = run.config.run
        for step in range(args.steps):
            for v, p in parts.items():
                t0 = time.perf_counter()
                x, y = p.data.train_batch(step, cfg.batch_size, cfg.seed)
                loss = p.data.loss(p.model(x), y)
                loss.backward()
                p.optimizer.step()
                p.optimizer.zero_grad(set_to_none=True)
                p.scheduler.step()
                loss.item()
                if step >= 20:
                    times[v].append(time.perf_counter() - t0)
        med = {v: statistics.median(t) * 1e3 for v, t in times.items()}
        first = med[args.variants[0]]
        print(f"width {run.config.model.width}: " + ", ".join(f"{v} {ms:.2f} ms ({ms / first:.2f}x)"
                                                              for v, ms in med.items()), flush=True)


if __name__ == "__main__":
    main()
