"""Cost of `AlignmentMonitor` under FSDP2: a width-256, 4-layer llama, ``fully_shard`` per block, 2 gloo processes.

    python bench/monitor_overhead_fsdp.py [--steps 100] [--every 10] [--world 2] [--threads 1]

The same paired design as ``monitor_overhead.py`` (steps with and without the monitor alternate
in a seeded random order, the cost is the median paired difference), run on every rank in lockstep
with a barrier before each timed step, so rank 0's wall time is the step of the whole job. A
measured step adds, beyond the single-process monitor, one all-gather of W and one of W after the
step per monitored layer, and one all-reduce of the X-side norms. The global batch (16 x 128 byte
tokens by default) is split over the ranks, so each rank's X is ⌈sample·batch/world⌉ sequences.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.fsdp import fully_shard

from lrtransfer.models.llama import Llama, LlamaConfig
from lrtransfer.monitor import AlignmentMonitor
from monitor_overhead import make_step, paired_times, report, timed  # the single-process bench beside this file


def worker(rank: int, args, port: int) -> None:
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.world,
                            timeout=datetime.timedelta(minutes=10))
    try:
        torch.manual_seed(0)
        model = Llama(LlamaConfig(width=256, depth=4, head_dim=32, vocab_size=256, seq_len=args.seq))
        for block in model.layers:
            fully_shard(block)
        fully_shard(model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        local = args.batch // args.world
        tokens = torch.randint(0, 256, (args.batch, args.seq + 1))[rank * local:(rank + 1) * local]
        step = make_step(model, opt, tokens)
        monitor = AlignmentMonitor(model, every=args.every)
        for _ in range(args.warmup):
            timed(step, contextlib.nullcontext(), dist.barrier)
        pairs = paired_times(step, monitor, args.steps, sync=dist.barrier)
        if rank == 0:
            print(f"FSDP2 fully_shard per block + root, {args.world} gloo processes x {args.threads} threads, "
                  f"global batch {args.batch} ({local} per rank); rank 0's times:")
            report(args, len(monitor.layers), pairs, monitor)
    finally:
        dist.destroy_process_group()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100, help="pairs of steps (with, without the monitor)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--every", type=int, default=10, help="monitor interval of the main comparison")
    p.add_argument("--world", type=int, default=2, help="processes (ranks)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    p.add_argument("--batch", type=int, default=16, help="global batch (split over the ranks)")
    p.add_argument("--seq", type=int, default=128)
    args = p.parse_args(argv)
    if args.batch % args.world:
        p.error(f"--batch {args.batch} does not split over --world {args.world}")
    args.device = "cpu"  # gloo; read by `report`
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(args, port), nprocs=args.world)


if __name__ == "__main__":
    main()
