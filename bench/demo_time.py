"""Wall time of the built-in study (`lrtransfer demo`) and its runs per minute.

Usage: python bench/demo_time.py [--out DIR] [--study demo] [--workers 2] [--threads 1]

Runs the study into a fresh folder (default: a temporary one), then prints the wall time, the
number of distinct runs trained, runs per minute, and the training time per width. The issue's
goal: the demo within 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from lrtransfer import sweep
from lrtransfer.study import run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Study folder (must not exist; default: temporary).")
    parser.add_argument("--study", default="demo")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="lrtransfer-demo-")) / "study"
    if out.exists():
        raise SystemExit(f"--out: {out} exists; the benchmark needs a fresh folder")
    t0 = time.perf_counter()
    result = run_study(args.study, out, workers=args.workers, threads=args.threads, progress=False)
    wall = time.perf_counter() - t0
    runs = sweep.results(out).drop_duplicates("config_hash")
    trained = runs[runs["status"].isin(["done", "diverged"])]
    print(f"study {args.study}: {len(trained)} distinct runs in {wall / 60:.1f} min "
          f"({len(trained) / (wall / 60):.2f} runs/min); report {result.report}")
    per_width = trained.groupby("width")["wall_s"].agg(["count", "mean", "sum"]).round(1)
    print("training time per run by width (s):")
    print(per_width.to_string())
    if args.out is None:
        shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
