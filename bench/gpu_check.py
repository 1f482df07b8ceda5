"""The demo's model on a GPU: bf16 step time and MFU per width, then a small study packed on the GPUs.

    python bench/gpu_check.py [--out DIR] [--runs-per-gpu 4] [--steps 300] [--device cuda]

Part 1 times the full training step (batch, bf16 autocast forward, backward, fused AdamW,
zero_grad, scheduler, ``loss.item()``) of the demo's llama (`lrtransfer demo`, on the stdlib corpus:
the machine may be offline) at each width, after 20 warm-up steps, and reports the median ms,
tokens/s and MFU: model FLOPs per step (`bench/demo_time.run_flops`) / step time / the bf16 peak of
an 8192³ ``torch.mm`` measured here. Part 2 runs a one-phase study of the same model with
``--runs-per-gpu`` runs on each GPU (`lrtransfer.sweep.placement`) and reports its wall time, runs
per minute and each width's median run time. ``--device cpu`` runs both parts tiny, to check the script.
Writes ``DIR/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from demo_time import run_flops
from lrtransfer import sweep
from lrtransfer.config import apply_overrides, validate
from lrtransfer.study import study_spec
from lrtransfer.training.distributed import init_distributed
from lrtransfer.training.setup import build_parts

OFFLINE = {"data.corpus": "stdlib", "run.checkpoint_every": 0, "monitor.every": 50}


def run_config(width_mult: int, steps: int, device: str):
    spec = study_spec("demo")
    base = {**spec["base"]["overrides"], **OFFLINE, "run.steps": steps, "run.device": device,
            "run.bf16": device == "cuda", "model.width": 16 * width_mult}
    raw = apply_overrides(sweep.load_spec(spec).base.raw(), base)
    return validate(raw)


def bf16_peak(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """Best FLOP/s of an n³ bf16 torch.mm (fp32 on CPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = n if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(reps + 2):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0) if i >= 2 else best
    return 2 * n**3 / best


def step_times(config, device: torch.device, steps: int) -> list[float]:
    parts = build_parts(config, device, init_distributed(device))
    cfg, times = config.run, []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if config.run.bf16 else torch.autocast("cpu",
                                                                                                    enabled=False)
    for step in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        x, y = (t.to(device) for t in parts.data.train_batch(step, cfg.batch_size, cfg.seed))
        with autocast:
            loss = parts.data.loss(parts.model(x), y)
        loss.backward()
        parts.optimizer.step()
        parts.optimizer.zero_grad(set_to_none=True)
        parts.scheduler.step()
        loss.item()
        times.append(time.perf_counter() - t0)
    return times[20:]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/gpu_check")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--steps", type=int, default=300, help="steps of each study run")
    parser.add_argument("--timed-steps", type=int, default=100)
    parser.add_argument("--runs-per-gpu", type=int, default=4)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    peak = bf16_peak(device)
    print(f"device: {name}, torch {torch.__version__}; measured matmul peak {peak / 1e9:.0f} GFLOP/s", flush=True)

    widths = []
    for m in args.widths:
        config = run_config(m, args.timed_steps + 20, args.device)
        ms = statistics.median(step_times(config, device, args.timed_steps + 20)) * 1e3
        flops = run_flops(config) / config.run.steps
        tokens = config.run.batch_size * config.data.seq_len
        row = {"width": config.model.width, "step_ms": ms, "tokens_per_s": tokens / ms * 1e3,
               "flops_per_step": flops, "mfu": flops / (ms / 1e3) / peak}
        widths.append(row)
        print(f"width {row['width']:>4}: {ms:7.2f} ms/step, {row['tokens_per_s']:>9.0f} tokens/s, "
              f"MFU {100 * row['mfu']:.3f}% of the measured peak", flush=True)

    spec = study_spec("demo")
    spec["base"]["overrides"].update({**OFFLINE, "run.steps": args.steps, "run.device": args.device,
                                      "run.bf16": args.device == "cuda"})
    spec.update(name="gpu-check", protocol="one_phase", lrs=[4e-3, 8e-3, 1.6e-2], dynamics=False, refine=0)
    spec.pop("phase1_lrs")
    placement = {"runs_per_gpu": args.runs_per_gpu} if args.device == "cuda" else {"gpus": "none"}
    t0 = time.perf_counter()
    report = sweep.run_sweep(spec, out / "study", progress=False, placement=placement,
                             workers=None if args.device == "cuda" else 2)
    wall = time.perf_counter() - t0
    df = sweep.results(out / "study").drop_duplicates("config_hash")
    runs = {"wall_s": wall, "runs": len(df), "runs_per_min": len(df) / wall * 60, "ok": report.ok,
            "status": df["status"].value_counts().to_dict(),
            "run_wall_s": {int(w): float(g["wall_s"].median()) for w, g in df.groupby("width")}}
    print(f"study: {len(df)} runs of {args.steps} steps, {args.runs_per_gpu} per GPU: {wall:.0f} s "
          f"({runs['runs_per_min']:.1f} runs/min), {runs['status']}; median run s by width {runs['run_wall_s']}")
    print(report.text())
    json.dump({"device": name, "torch": torch.__version__, "peak_flops": peak, "widths": widths, "study": runs,
               "failures": report.failures}, open(out / "gpu_check.json", "w"), indent=2)
    print(f"wrote {out / 'gpu_check.json'}")


if __name__ == "__main__":
    main()
