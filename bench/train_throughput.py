"""Training throughput of the built-in llama vs. matmul peak and Hugging Face `LlamaForCausalLM`.

    python bench/train_throughput.py [--widths 64 128 256 512] [--steps 10] [--threads 2] [--json PATH]

What is timed: one full training step on a fixed batch of ``--batch`` x ``--seq`` byte tokens
(default 16 x 128): forward, ``F.cross_entropy`` on the logits, backward, ``AdamW(betas=(0.9, 0.95))``
step and ``zero_grad(set_to_none=True)``. Models: ``Llama(LlamaConfig(width=W, base_width=W, depth=4,
head_dim=32, vocab_size=256, seq_len=128))`` and, when `transformers` is installed (``pip install
-e .[bench]``), ``LlamaForCausalLM`` with hidden_size=W, intermediate_size=3W, 4 layers, W/32 heads (no
GQA), vocab 256, untied head, ``attn_implementation="sdpa"``, no dropout, rms_norm_eps=1e-5. The HF model
gets OUR weights (names mapped), and its logits are checked against ours before timing, so both run
the same function. Both do equivalent work: the HF model is called with ``use_cache=False`` and no
``labels``; the loss is computed the same way outside either model. Parameter counts must match.

FLOP count (per step; only matmul FLOPs, a multiply-add counts 2; embedding lookups, norms,
activations, RoPE, softmax and the optimizer are free)::

    FLOPs/step = tokens * (6 * N_matmul + 12 * L * T * d)

- ``N_matmul``: weights of every linear layer = L * (4 d^2 + 3 * d * 3d) + d * V
  (attention q/k/v/o, SwiGLU w1/w2/w3, untied readout); i.e. the parameter count without the token
  embedding and the RMSNorm gains. ``6 N`` = 2 N forward + 4 N backward (grad wrt input and weight).
- ``12 L T d``: attention scores ``Q K^T`` and values ``P V``, 2 * 2 T d forward per token and layer,
  times 3 for forward + backward; this is the PaLM/MFU convention and counts the FULL T x T score
  matrix, although causal attention needs only half of it (so it is a slight over-count of useful
  work: at width 512 the attention term is 3.7% of the total).
- ``tokens`` = batch * seq (the inputs; targets are the inputs shifted by one).

Matmul peak: best of ``--peak-reps`` timed ``torch.mm`` of two 2048 x 2048 fp32 matrices (after
warm-up), measured in the same process with the same thread count before each width and once at
the end; the largest of these is the peak used for "% of peak" (the smaller ones show how much
other load there was).

Timing: ``--warmup`` untimed steps per model, then ``--steps`` trials, each running one step of ours
and one of HF back to back, in an order that alternates trial by trial (so slow spells from other
processes hit both). Reported: the median step time of each, and HF/ours as the median over trials
of the paired ratio (HF step / ours step of the same trial), which is robust to load that comes
and goes; the ratio of the two medians is in the JSON too. ``--steps-512`` can cut the trials at
width >= 512 to keep the whole run short.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from lrtransfer.models.llama import Llama, LlamaConfig

try:  # optional: `pip install -e .[bench]`
    import transformers
    from transformers import LlamaConfig as HFLlamaConfig
    from transformers import LlamaForCausalLM

    HF_ERROR = None
except Exception as exc:  # ImportError, or a broken install
    transformers = None
    HF_ERROR = f"{type(exc).__name__}: {exc}"

DEPTH, HEAD_DIM, VOCAB = 4, 32, 256


# ---------------------------------------------------------------- models


def build_ours(width: int, seq: int) -> Llama:
    cfg = LlamaConfig(width=width, base_width=width, depth=DEPTH, head_dim=HEAD_DIM, vocab_size=VOCAB, seq_len=seq)
    return Llama(cfg)


def build_hf(width: int, seq: int):
    cfg = HFLlamaConfig(
        hidden_size=width,
        intermediate_size=3 * width,
        num_hidden_layers=DEPTH,
        num_attention_heads=width // HEAD_DIM,
        num_key_value_heads=width // HEAD_DIM,
        head_dim=HEAD_DIM,
        vocab_size=VOCAB,
        max_position_embeddings=seq,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
        attention_dropout=0.0,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        use_cache=False,
    )
    return LlamaForCausalLM(cfg)


def hf_state_from_ours(ours: Llama) -> dict[str, torch.Tensor]:
    """Our state dict under HF's parameter names (same tensors' values, cloned)."""
    rename = {
        "attention_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
        "attention.wq": "self_attn.q_proj",
        "attention.wk": "self_attn.k_proj",
        "attention.wv": "self_attn.v_proj",
        "attention.wo": "self_attn.o_proj",
        "feed_forward.w1": "mlp.gate_proj",
        "feed_forward.w3": "mlp.up_proj",
        "feed_forward.w2": "mlp.down_proj",
    }
    out = {}
    for name, tensor in ours.state_dict().items():
        if name == "tok_embeddings.weight":
            new = "model.embed_tokens.weight"
        elif name == "output.weight":
            new = "lm_head.weight"
        elif name == "norm.weight":
            new = "model.norm.weight"
        else:
            new = "model." + name
            for a, b in rename.items():
                new = new.replace(f".{a}.", f".{b}.")
        out[new] = tensor.detach().clone()
    return out


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_matmul_params(width: int) -> int:
    """Weights of all linear layers: L * (4 d^2 + 9 d^2) + d * V (untied readout)."""
    return DEPTH * 13 * width * width + width * VOCAB


def flops_per_step(width: int, batch: int, seq: int) -> float:
    tokens = batch * seq
    return tokens * (6 * n_matmul_params(width) + 12 * DEPTH * seq * width)


# ---------------------------------------------------------------- timing


def make_step(forward, model, tokens):
    """forward(inputs) -> logits; the same loss / AdamW / zero_grad for both models."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    inputs, targets = tokens[:, :-1], tokens[:, 1:].flatten()

    def step():
        logits = forward(inputs)
        F.cross_entropy(logits.flatten(0, 1), targets).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    """Best-of-`reps` fp32 FLOP/s of an n x n x n torch.mm (after warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    for _ in range(3):
        torch.mm(a, b, out=c)
    best = min(timed(lambda: torch.mm(a, b, out=c)) for _ in range(reps))
    return 2 * n**3 / best


def check_same_function(ours: Llama, hf, tokens: torch.Tensor) -> float:
    """Max |logits_ours - logits_hf| on the benchmark batch (fp32, eval, no grad)."""
    with torch.no_grad():
        a = ours(tokens[:, :-1])
        b = hf(input_ids=tokens[:, :-1], use_cache=False).logits
    return (a - b).abs().max().item()


def bench_width(width: int, args, with_hf: bool) -> dict:
    torch.manual_seed(0)
    tokens = torch.randint(0, VOCAB, (args.batch, args.seq + 1))
    ours = build_ours(width, args.seq)
    row = {
        "width": width,
        "params_ours": n_params(ours),
        "params_matmul": n_matmul_params(width),
        "flops_per_step": flops_per_step(width, args.batch, args.seq),
    }
    steps = {"ours": make_step(ours, ours, tokens)}
    if with_hf:
        hf = build_hf(width, args.seq)
        row["params_hf"] = n_params(hf)
        if row["params_hf"] != row["params_ours"]:
            ours, hf = row["params_ours"], row["params_hf"]
            raise SystemExit(f"width {width}: parameter counts differ: ours {ours}, HF {hf}")
        hf.load_state_dict(hf_state_from_ours(ours), strict=True)
        ours.eval(), hf.eval()
        row["max_abs_logit_diff"] = check_same_function(ours, hf, tokens)
        if row["max_abs_logit_diff"] > 1e-3:
            raise SystemExit(f"width {width}: HF and ours compute different logits ({row['max_abs_logit_diff']:.2e})")
        ours.train(), hf.train()
        steps["hf"] = make_step(lambda x: hf(input_ids=x, use_cache=False).logits, hf, tokens)

    n_trials = args.steps_512 if (width >= 512 and args.steps_512) else args.steps
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times = {k: [] for k in steps}
    order = list(steps)
    for trial in range(n_trials):
        for k in order if trial % 2 == 0 else order[::-1]:
            times[k].append(timed(steps[k]))
    row["trials"] = n_trials
    row["times_s"] = times
    row["ours_s"] = statistics.median(times["ours"])
    if with_hf:
        row["hf_s"] = statistics.median(times["hf"])
        row["hf_over_ours_of_medians"] = row["hf_s"] / row["ours_s"]
        # Paired: each trial's HF step over the ours step run next to it (same load), then the median.
        row["hf_over_ours"] = statistics.median(h / o for h, o in zip(times["hf"], times["ours"]))
    row["tokens_per_s"] = args.batch * args.seq / row["ours_s"]
    row["flops_per_s"] = row["flops_per_step"] / row["ours_s"]
    return row


# ---------------------------------------------------------------- main


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model before timing")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model (interleaved trials)")
    p.add_argument("--steps-512", type=int, default=None, help="timed steps at width >= 512 (default: --steps)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--peak-reps", type=int, default=10, help="timed 2048^3 fp32 matmuls (best is the peak)")
    p.add_argument("--no-hf", action="store_true", help="skip the transformers comparison")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    args = p.parse_args(argv)
    if args.warmup < 0 or args.steps < 1:
        p.error("--warmup must be >= 0 and --steps >= 1")

    torch.set_num_threads(args.threads)
    with_hf = not args.no_hf and transformers is not None
    hf_note = (
        f"transformers {transformers.__version__}"
        if with_hf
        else ("skipped (--no-hf)" if args.no_hf else f"NOT AVAILABLE ({HF_ERROR}); timing ours only")
    )
    load_start = os.getloadavg()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, HF: {hf_note}")
    print(f"load average at start (1/5/15 min): {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    print(f"batch {args.batch} x seq {args.seq}, depth {DEPTH}, head_dim {HEAD_DIM}, vocab {VOCAB}, AdamW(0.9, 0.95)")
    print("FLOPs/step = tokens * (6 * N_matmul + 12 * L * T * d)   [N_matmul = all linear weights]")

    peaks, rows = [], []
    for width in args.widths:
        peaks.append(matmul_peak(reps=args.peak_reps))
        row = bench_width(width, args, with_hf)
        rows.append(row)
        extra = f", HF {row['params_hf']:,}, max |dlogit| {row['max_abs_logit_diff']:.1e}" if with_hf else ""
        print(f"  width {width}: params ours {row['params_ours']:,}{extra}, {row['trials']} trials", flush=True)
    peaks.append(matmul_peak(reps=args.peak_reps))
    peak = max(peaks)
    print(f"fp32 matmul peak (2048^3 torch.mm, best of {args.peak_reps}; before each width and at the end): "
          + ", ".join(f"{x / 1e9:.0f}" for x in peaks) + f" GFLOP/s; using the max, {peak / 1e9:.1f} GFLOP/s")
    load_end = os.getloadavg()
    print(f"load average at end (1/5/15 min): {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    print()

    head = f"{'width':>5} {'params':>11} {'ours ms/step':>12} {'tokens/s':>9} {'GFLOP/s':>8} {'% peak':>7}"
    head += f" {'HF ms/step':>10} {'HF/ours':>7}" if with_hf else ""
    print(head)
    print("-" * len(head))
    for r in rows:
        r["pct_of_peak"] = 100 * r["flops_per_s"] / peak
        line = (
            f"{r['width']:>5} {r['params_ours']:>11,} {r['ours_s'] * 1e3:>12.1f} {r['tokens_per_s']:>9.0f}"
            f" {r['flops_per_s'] / 1e9:>8.1f} {r['pct_of_peak']:>6.1f}%"
        )
        if with_hf:
            line += f" {r['hf_s'] * 1e3:>10.1f} {r['hf_over_ours']:>7.2f}"
        print(line)
    if with_hf:
        print("HF/ours: median over trials of (HF step / ours step in the same trial); > 1 means ours is faster.")
    else:
        print(f"HF comparison: {hf_note}")

    if args.json:
        result = {
            "torch": torch.__version__,
            "transformers": transformers.__version__ if with_hf else None,
            "hf_note": hf_note,
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "batch": args.batch,
            "seq": args.seq,
            "depth": DEPTH,
            "head_dim": HEAD_DIM,
            "vocab": VOCAB,
            "flop_formula": "tokens * (6 * N_matmul + 12 * L * T * d)",
            "matmul_peak_flops": peak,
            "matmul_peaks_per_width_then_end": peaks,
            "loadavg_start_end": [load_start, load_end],
            "rows": rows,
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
