"""AlignmentMonitor under a real 2-process DistributedDataParallel run (gloo, CPU, loopback only)."""

import datetime
import json
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lrtransfer.monitor import AlignmentMonitor, read_records

TIMEOUT_S = 60  # the whole run; a hung rendezvous must fail the test, never hang it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        monitor = AlignmentMonitor(model, every=2, sample=1 / 2, path=f"{out}/rank{rank}.jsonl",
                                   roles={"0.weight": "input"})
        hooks = []
        for step in range(4):
            x = torch.randn(4, 6) + rank
            with monitor.step(step):
                hooks.append(sum(len(m._forward_pre_hooks) for m in model.module.modules()))
                model(x).square().mean().backward()
                opt.step()
                opt.zero_grad()
            if step == 0:
                expect = x[:2].norm().item()
        result = {"records": len(monitor.frame()), "hooks": hooks, "x_norm": expect}
        with open(f"{out}/result{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_ddp_only_rank0_measures(tmp_path):
    ctx = mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
            assert time.monotonic() < deadline, "DDP workers timed out"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    r0, r1 = (json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1))
    assert r0["records"] == 2 * 2 and r0["hooks"] == [2, 0, 2, 0]
    assert r1["records"] == 0 and r1["hooks"] == [0, 0, 0, 0]
    assert not (tmp_path / "rank1.jsonl").exists()
    df = read_records(tmp_path / "rank0.jsonl")
    assert df["layer"].tolist() == ["0", "2", "0", "2"]  # names of the unwrapped model
    assert df["role"].tolist() == ["input", "unknown"] * 2
    first = df[(df["step"] == 0) & (df["layer"] == "0")]
    assert abs(first["input_norm"].item() - r0["x_norm"]) < 1e-5 * r0["x_norm"]  # rank 0's local batch
