"""Run a test's worker on 2 real torch.distributed processes (gloo, CPU, loopback only)."""

import datetime
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TIMEOUT_S = 90  # the whole run; a hung rendezvous or collective must fail the test, never hang it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, worker, args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        worker(rank, *args)
    finally:
        dist.destroy_process_group()


def run(worker, *args, world: int = 2) -> None:
    """``worker(rank, *args)`` on ``world`` spawned processes in one gloo group; raises if any fails."""
    ctx = mp.start_processes(_entry, args=(world, _free_port(), worker, args), nprocs=world, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
            assert time.monotonic() < deadline, "distributed workers timed out"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
