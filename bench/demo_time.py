"""Wall time of the built-in study (`lrtransfer demo`), its model FLOPs and the fraction of peak.

Usage: python bench/demo_time.py [--out DIR] [--study demo] [--workers 2] [--threads 1]
                                 [--plan-only] [--slow-peak 69]

Runs the study into a fresh folder (default: a temporary one), then prints the wall time, the
distinct runs trained, runs per minute, the training time per width, the study's total model
FLOPs, the fp32 matmul peak measured here (1 thread × workers, as the runs use it), the fraction
of that peak the study achieved, and the wall time this predicts on a machine of another peak
(``--slow-peak``, GFLOP/s of 2 cores: the slow machine of this kind measured 69). The issue's goal:
the demo within 15 minutes on the slow machine. ``--plan-only`` counts runs and FLOPs of the plan
without training (phase 2 assumed at the middle phase-1 LR: the count of distinct runs may differ
by the one or two runs phase 1 and phase 2 share; an adaptive phase 2, spec ``bracket``, counts its
first round, and the refine stage is not counted).

FLOPs per step of the llama (as bench/train_throughput.py): tokens · (6·N_matmul + 12·L·T·d),
N_matmul = L·13·d² + d·V; a run is steps × that. Other families are not counted.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from lrtransfer import sweep
from lrtransfer.config import RunConfig, validate
from lrtransfer.study import run_study, study_names, study_spec
from lrtransfer.sweep.plan import dynamics, first_brackets, phase1, phase2


def run_flops(config: RunConfig) -> float:
    """Model FLOPs of one training run (0 for families other than llama)."""
    m, d = config.model, config.model.width
    if m.family != "llama":
        return 0.0
    tokens = config.run.batch_size * config.data.seq_len
    n_matmul = m.depth * 13 * d * d + d * m.vocab_size
    return config.run.steps * tokens * (6 * n_matmul + 12 * m.depth * config.data.seq_len * d)


def matmul_peak(threads: int, n: int = 2048, reps: int = 8) -> float:
    """Best fp32 FLOP/s of an n³ torch.mm with `threads` threads."""
    torch.set_num_threads(threads)
    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    for _ in range(2):
        torch.mm(a, b, out=c)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def planned_runs(name: str) -> list:
    """The study's distinct planned runs, without training (see the module doc)."""
    spec = sweep.load_spec(study_spec(name) if name in study_names() else name)
    p1 = phase1(spec) if spec.protocol == "two_phase" else []
    grid = spec.phase1_lrs or spec.lrs
    fixed = dict.fromkeys(spec.arm_overrides(), grid[len(grid) // 2] if p1 else None)
    # an adaptive phase 2 (spec bracket): its first round; later rounds depend on the losses
    lrs = None if spec.bracket is None else first_brackets(spec, dict.fromkeys(fixed, grid[len(grid) // 2]))
    runs = p1 + phase2(spec, fixed, lrs) + (dynamics(spec, spec.lrs[len(spec.lrs) // 2]) if spec.dynamics else [])
    return list({r.config_hash: r for r in runs}.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Study folder (must not exist; default: temporary).")
    parser.add_argument("--study", default="demo")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plan-only", action="store_true", help="Count runs and FLOPs; train nothing.")
    parser.add_argument("--slow-peak", type=float, default=69.0, help="GFLOP/s (2 cores) of the machine to predict.")
    args = parser.parse_args()
    peak = matmul_peak(args.workers * args.threads)  # as the issue measured it: 2048³ on all the cores used
    print(f"fp32 matmul peak here: {peak / 1e9:.0f} GFLOP/s ({args.workers * args.threads} threads, 2048³ torch.mm)")
    if args.plan_only:
        runs = planned_runs(args.study)
        flops = sum(run_flops(r.config) for r in runs)
        by_width = {}
        for r in runs:
            by_width[r.config.model.width] = by_width.get(r.config.model.width, 0) + 1
        print(f"study {args.study}: {len(runs)} distinct runs planned {dict(sorted(by_width.items()))}, "
              f"{flops / 1e12:.2f} TFLOP of model compute")
        return
    out = args.out or Path(tempfile.mkdtemp(prefix="lrtransfer-demo-")) / "study"
    if out.exists():
        raise SystemExit(f"--out: {out} exists; the benchmark needs a fresh folder")
    t0 = time.perf_counter()
    result = run_study(args.study, out, workers=args.workers, threads=args.threads, progress=False)
    wall = time.perf_counter() - t0
    after = matmul_peak(args.workers * args.threads)
    print(f"fp32 matmul peak after the study: {after / 1e9:.0f} GFLOP/s; the higher of the two is used "
          "(a shared machine's peak varies, and the higher one predicts the slower time elsewhere)")
    peak = max(peak, after)
    runs = sweep.results(out).drop_duplicates("config_hash")
    trained = runs[runs["status"].isin(["done", "diverged"])]
    flops = sum(run_flops(validate(c)) for c in trained["config"])
    print(f"study {args.study}: {len(trained)} distinct runs in {wall / 60:.1f} min "
          f"({len(trained) / (wall / 60):.2f} runs/min); report {result.report}")
    print(f"model compute {flops / 1e12:.2f} TFLOP = {flops / wall / peak:.1%} of the measured peak over the wall "
          f"time; on a machine of {args.slow_peak:g} GFLOP/s: about {wall * peak / 1e9 / args.slow_peak / 60:.1f} min")
    per_width = trained.groupby("width")["wall_s"].agg(["count", "mean", "sum"]).round(1)
    print("training time per run by width (s):")
    print(per_width.to_string())
    if args.out is None:
        shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
