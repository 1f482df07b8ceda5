"""Cost of `AlignmentMonitor` on a width-256, 4-layer llama (16 x 128 byte tokens, AdamW).

    python bench/monitor_overhead.py [--steps 200] [--every 10] [--threads 2]

Steps with the monitor (numbered 0, 1, ... so every E-th is measured) and steps without it
alternate one by one, in random order within each pair, so each step with the monitor has a neighbour without it
that ran under the same machine load. The cost of a step kind is the median of its paired
differences (robust to steps slowed by other processes); the overhead is
((E-1)·cost_unmeasured + cost_measured) / E over the median plain step. Target: under 3%.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time

import torch
import torch.nn.functional as F

from lrtransfer.models.llama import Llama, LlamaConfig
from lrtransfer.monitor import AlignmentMonitor


def make_step(model, opt, tokens):
    """One full training step on a fixed batch: forward, backward, AdamW step."""

    def step():
        logits = model(tokens[:, :-1])
        F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def timed(step, ctx, sync=None) -> float:
    """Wall seconds of one step inside ``ctx``; ``sync`` waits for outstanding work before and after
    (default: CUDA's, so the GPU work is counted; a process group's barrier under FSDP2)."""
    sync = sync or (torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None))
    sync()
    t0 = time.perf_counter()
    with ctx:
        step()
    sync()
    return time.perf_counter() - t0


def paired_times(step, monitor, steps: int, sync=None) -> list[tuple[int, float, float]]:
    """(monitor step number, seconds with the monitor, seconds of the adjacent plain step), in a
    random order per pair that is the same on every rank (seed 0)."""
    pairs, coin = [], random.Random(0)
    for s in range(steps):
        if coin.random() < 0.5:
            off, on = timed(step, contextlib.nullcontext(), sync), timed(step, monitor.step(s), sync)
        else:
            on, off = timed(step, monitor.step(s), sync), timed(step, contextlib.nullcontext(), sync)
        pairs.append((s, on, off))
    return pairs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="pairs of steps (with, without the monitor)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--every", type=int, default=10, help="monitor interval of the main comparison")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(width=256, depth=4, head_dim=32, vocab_size=256, seq_len=args.seq)).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    tokens = torch.randint(0, 256, (args.batch, args.seq + 1), device=args.device)  # byte-level: vocab 256
    step = make_step(model, opt, tokens)
    monitor = AlignmentMonitor(model, every=args.every)
    for _ in range(args.warmup):
        timed(step, contextlib.nullcontext())
    pairs = paired_times(step, monitor, args.steps)
    report(args, len(monitor.layers), pairs, monitor)


def report(args, n_layers: int, pairs: list[tuple[int, float, float]], monitor: AlignmentMonitor) -> None:
    e = args.every
    off = statistics.median(p[2] for p in pairs)
    threads = torch.get_num_threads()
    print(f"llama width=256 depth=4 on {args.device}, batch {args.batch}x{args.seq}, {threads} threads, "
          f"{args.steps} step pairs, every={e}, {n_layers} monitored layers")
    print(f"  plain step: median {1e3 * off:.2f} ms")
    cost = {}
    for kind in ("unmeasured", "measured"):
        rows = [p for p in pairs if monitor.measures(p[0]) == (kind == "measured")]
        cost[kind] = statistics.median(on - off_ for _, on, off_ in rows)
        print(f"  {kind:>10} step: median {1e3 * statistics.median(r[1] for r in rows):.2f} ms, "
              f"paired cost {1e3 * cost[kind]:+.2f} ms (n={len(rows)})")
    overhead = ((e - 1) * cost["unmeasured"] + cost["measured"]) / e / off
    print(f"cost of one measured step: {1e3 * cost['measured']:.2f} ms ({100 * cost['measured'] / off:.1f}% of a step)")
    print(f"overhead at every={e}: {100 * overhead:+.2f}% of step time (target < 3%); "
          f"counting only the measured steps (the others add no hooks): {100 * cost['measured'] / e / off:+.2f}%")


if __name__ == "__main__":
    main()
