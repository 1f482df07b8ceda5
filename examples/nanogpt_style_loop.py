"""A plain nanoGPT-style training loop with lrtransfer's pieces and no study around it.

    python examples/nanogpt_style_loop.py                  # width 128 (4× a 32-wide base), 1000 steps
    python examples/nanogpt_style_loop.py --tiny --steps 20
    python examples/nanogpt_style_loop.py --text my_corpus.txt --width 256

Three additions to the loop one would write anyway: `lrtransfer.param_groups` (μP's η/m with the
weight-decay rule that makes it transfer, Eq 6-8) instead of ``model.parameters()``,
`lrtransfer.schedules.lambda_lr` (multiplies each group's scaled LR instead of overwriting it, as
nanoGPT's ``param_group['lr'] = lr`` would) and `lrtransfer.AlignmentMonitor` around the step
(Eq 2, 4: is μP's alignment assumption holding in this run?).
"""

from __future__ import annotations

import argparse
import inspect
import time
import typing
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import lrtransfer
from lrtransfer import schedules


class Block(nn.Module):
    def __init__(self, width: int, head_dim: int, seq_len: int):
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
    """nanoGPT's model, small: token + position embeddings, pre-LN blocks, a readout tied to the embedding."""

    def __init__(self, width: int, depth: int = 2, head_dim: int = 16, seq_len: int = 64, vocab: int = 256):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(seq_len, width)
        self.h = nn.ModuleList(Block(width, head_dim, seq_len) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: lrtransfer gives the one tensor the `input` role
        for emb in (self.wte, self.wpe):  # nanoGPT's std 0.02 (N(0, 1) would make the tied readout's logits huge)
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", help="a text file to train on, as bytes (default: some of Python's stdlib source)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--base-width", type=int, default=32, help="the width the LR was tuned at")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1.6e-2, help="base LR, as tuned at --base-width")
    parser.add_argument("--weight-decay", type=float, default=0.5)
    parser.add_argument("--tiny", action="store_true", help="width 32 on a 16-wide base, batch 4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    width, base_width, batch_size, seq_len = (32, 16, 4, 32) if args.tiny else (args.width, args.base_width, 16, 64)

    # -- data: bytes of a text file, 90/10 split, random windows (nanoGPT's get_batch)
    files = [Path(args.text)] if args.text else [Path(m.__file__) for m in (argparse, inspect, typing)]
    data = torch.frombuffer(bytearray(b"\n".join(f.read_bytes() for f in files)), dtype=torch.uint8).long()
    n = int(0.9 * len(data))
    train_data, val_data = data[:n], data[n:]

    def get_batch(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        d = train_data if split == "train" else val_data
        ix = torch.randint(len(d) - seq_len - 1, (batch_size,))
        return torch.stack([d[i:i + seq_len] for i in ix]), torch.stack([d[i + 1:i + 1 + seq_len] for i in ix])

    @torch.no_grad()
    def estimate_loss(iters: int = 10) -> float:
        model.eval()
        losses = [model(*get_batch("val"))[1].item() for _ in range(iters)]
        model.train()
        return sum(losses) / len(losses)

    # -- model, width-scaled param groups (the base model only lends its shapes: meta device), schedule, monitor
    model = GPT(width, seq_len=seq_len)
    with torch.device("meta"):
        base = GPT(base_width, seq_len=seq_len)
    groups = lrtransfer.param_groups(model, base, lr=args.lr, weight_decay=args.weight_decay,
                                     lr_scaling="mup", wd_scaling="independent")
    print(lrtransfer.describe_groups(groups).to_string(index=False))
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95))
    scheduler = schedules.lambda_lr(optimizer, lambda t: schedules.warmup_linear_decay(t, total=args.steps))
    monitor = lrtransfer.AlignmentMonitor(model, every=max(args.steps // 4, 1), sample=0.25,
                                          roles=lrtransfer.parameter_roles(model, base))

    # -- the loop: forward, backward, step, log
    t0 = time.perf_counter()
    for it in range(args.steps):
        x, y = get_batch("train")
        with monitor.step(it):
            _, loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if it % max(args.steps // 5, 1) == 0 or it == args.steps - 1:
            print(f"step {it}: train loss {loss.item():.4f}, val loss {estimate_loss():.4f}, "
                  f"{(time.perf_counter() - t0) / (it + 1) * 1e3:.0f} ms/step")

    df = monitor.frame()
    summary = df.groupby(["step", "role"])[["alignment_ratio", "relative_update"]].mean()
    # muP assumes alignment_ratio = α_ΔW/α_W = Θ(√fan_in) (Eq 5); the paper finds it drops to about 1 in training.
    print("alignment by step and role (mean over layers):")
    print(summary.round(4).to_string())
    hidden = df[df["role"] == "hidden"]
    first, last = hidden["step"].min(), hidden["step"].max()
    print(f"hidden alignment_ratio: {hidden[hidden.step == first].alignment_ratio.mean():.4f} at step {first}, "
          f"{hidden[hidden.step == last].alignment_ratio.mean():.4f} at step {last}")


if __name__ == "__main__":
    main()
