"""A nanoGPT-style training script under torchrun with FSDP2, that an LR-transfer study runs as it is.

    torchrun --standalone --nproc_per_node=2 examples/torchrun_train.py --width 64 --lr 1e-2 --out runs/one
    lrtransfer sweep examples/torchrun_fsdp_study.yaml --out runs/torchrun   # the same script, a whole study

Two lines make it studyable (docs/at-scale.md, "Command objectives"): `lrtransfer.command_trial()`
gives the study's LR and weight-decay rule for `lrtransfer.param_groups` (None when run by hand),
and `lrtransfer.report_loss(step, loss)` reports each step's loss (rank 0 writes; a no-op by hand).
Everything else is an ordinary script: `fully_shard` per block and on the root (FSDP2; gloo on CPU,
NCCL on GPUs), each rank trains on its half of a global batch of bytes of this Python's stdlib source.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
import typing
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.nn import functional as F

import lrtransfer
from lrtransfer import schedules


class Block(nn.Module):
    def __init__(self, width: int, head_dim: int):
        super().__init__()
        self.n_head = width // head_dim
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.c_attn, self.c_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.c_fc, self.mlp_proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, width: int, depth: int, seq_len: int, head_dim: int = 16, vocab: int = 256):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(seq_len, width)
        self.h = nn.ModuleList(Block(width, head_dim) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        for emb in (self.wte, self.wpe):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def batch(data: torch.Tensor, step: int, seed: int, size: int, seq_len: int, rank: int, world: int):
    """This rank's share of the global batch of `step`: a pure function of (seed, step)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(len(data) - seq_len - 1, (size,), generator=g).chunk(world)[rank]
    x = torch.stack([data[i:i + seq_len] for i in starts])
    return x, torch.stack([data[i + 1:i + 1 + seq_len] for i in starts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--base-width", type=int, default=32, help="the width the LR is tuned at")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--wd", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16, help="global batch, split across the ranks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=".", help="where the script writes its own files")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(args.seed)
    files = [Path(m.__file__) for m in (argparse, inspect, typing)]
    data = torch.frombuffer(bytearray(b"\n".join(f.read_bytes() for f in files)), dtype=torch.uint8).long()

    model = GPT(args.width, args.depth, args.seq_len).to(device)
    with torch.device("meta"):  # only their shapes: which dimensions scale with width
        base = GPT(args.base_width, args.depth, args.seq_len)
        delta = GPT(2 * args.base_width, args.depth, args.seq_len)  # at the base width itself, what would scale
    for block in model.h:
        fully_shard(block)
    fully_shard(model)
    study = lrtransfer.command_trial()  # the study's trial (LRTRANSFER_*), or None when run by hand
    rules = study.rules if study else {"lr": args.lr, "weight_decay": args.wd, "wd_scaling": "independent"}
    groups = lrtransfer.param_groups(model, base, delta_model=delta if args.width == args.base_width else None,
                                     **rules)
    if rank == 0:
        print(lrtransfer.describe_groups(groups).to_string(index=False), flush=True)
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95))
    scheduler = schedules.lambda_lr(optimizer, lambda t: schedules.warmup_linear_decay(t, total=args.steps))

    t0 = time.perf_counter()
    for step in range(args.steps):
        x, y = (t.to(device) for t in batch(data, step, args.seed, args.batch_size, args.seq_len, rank, world))
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)  # the global batch's loss (gloo has no AVG)
        lrtransfer.report_loss(step, mean.item() / world)
        if rank == 0 and (step % 50 == 0 or step == args.steps - 1):
            print(f"step {step}: loss {mean.item() / world:.4f}, "
                  f"{(time.perf_counter() - t0) / (step + 1) * 1e3:.0f} ms/step", flush=True)
    dist.barrier()  # no rank tears gloo down while another still talks to it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # gloo's threads can still abort the interpreter's own teardown now and then ("terminate called
    # without an active exception", SIGABRT: a failed trial); the run is over, so skip that teardown.
    sys.stdout.flush()
    os._exit(0)
