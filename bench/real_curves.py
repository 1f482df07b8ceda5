"""Does the fitted optimum hold on real curves? Two halves of each Step Law curve, fitted alone.

The data (shared/data/README.md) are about 80 loss-vs-LR curves of MoE pre-training runs, one seed
each: one curve per model configuration (the architecture columns ``ARCH``), batch size ``bs`` and
token count ``D``, over 9 LRs √2 apart (``lr`` rounded to 3 significant digits). Each curve is split
by the parity of its LRs' places on that √2 grid into two half-curves, each 2× spaced (a curve with
a missing LR keeps 2× spacing in both halves), and each half is fitted alone, as a one-arm,
one-width ``results`` frame, by `lrtransfer.analysis.best_lrs`. Curves with fewer than
``--min-lrs`` LRs (2-point halves) are left out.

Reported per injection: the fraction of half-curves with an optimum claimed (target >= 80%); the
median width of the 90% interval in octaves, ``log2(lr_hi / lr_lo)``, over the claimed halves
(target <= 1.5); over curves whose halves both claim an optimum, the fraction with |z| > 1.645, where
``z = (x_even − x_odd) / sqrt(sd_even² + sd_odd²)``, ``x = log2(lr_fit)``, ``sd = opt_sd`` (target
<= 20%: the halves measure one optimum, so a calibrated interval disagrees in ~10%) and the median
|z| (0.67 if calibrated: far below, the intervals are too wide); and the noise sources. Half-curves
whose grid minimum is at one of their ends (no optimum to claim from the grid alone) are counted
beside the claims.

Injections (``--inject``), applied to each full curve before the split — made up, not in the data:

* ``none``: the curves as measured;
* ``blowup``: the loss at the curve's highest LR becomes 2.5× the curve's minimum, as in real sweeps
  whose highest LR blows up to a finite loss (6.5 on a curve of minimum 2.6);
* ``spike``: the point two √2-steps above the curve's argmin (so in the argmin's half, one 2× step
  above it) is raised by 10× the curve's loss range (max − min), far above both its neighbours;
  curves whose argmin is one of their two highest LRs get no spike.

    python bench/real_curves.py [--data ../shared/data/steplaw_moe_lr_bs_loss.csv] [--draws N]
        [--inject none blowup spike] [--min-lrs 6] [--csv halves.csv]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only contend (set before numpy)

import numpy as np
import pandas as pd

from lrtransfer.analysis import best_lrs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "steplaw_moe_lr_bs_loss.csv"
ARCH = ["seq_len", "topk", "nume", "moeh", "sed", "h", "ffnh", "numh", "numl", "numld", "moe_layer_enum_type",
        "mfa_version"]
KEYS = [*ARCH, "bs", "D"]
INJECTIONS = ("none", "blowup", "spike")
BLOWUP_FACTOR = 2.5  # injected blow-up loss over the curve's minimum
SPIKE_STEPS, SPIKE_RANGES = 2, 10.0  # the spike: √2-steps above the argmin, height in loss ranges
Z90 = 1.645  # |z| beyond which two halves disagree at the 90% level
TARGETS = {"claimed": ">= 80%", "interval": "<= 1.5 oct", "disagree": "<= 20%"}


def load_curves(path: Path, min_lrs: int) -> pd.DataFrame:
    """One row per run: the key columns, ``curve`` (its curve's number), ``lr`` (3 significant digits),
    ``step`` (place on the √2 grid from the file's lowest LR) and ``loss``; curves of >= ``min_lrs`` LRs."""
    data = pd.read_csv(path)
    data["lr"] = data["lr"].map(lambda lr: float(f"{lr:.3g}"))
    data["step"] = np.round(2 * np.log2(data["lr"] / data["lr"].min())).astype(int)
    data["curve"] = data.groupby(KEYS, sort=True).ngroup()
    if data.duplicated(["curve", "lr"]).any():
        raise ValueError(f"{path}: more than one run per curve and LR")
    data = data[data.groupby("curve")["lr"].transform("size") >= min_lrs]
    return data[["curve", *KEYS, "lr", "step", "loss"]].sort_values(["curve", "lr"]).reset_index(drop=True)


def inject(runs: pd.DataFrame, how: str) -> pd.DataFrame:
    """``runs`` with the injection ``how`` (module docstring) applied to each curve."""
    if how == "none":
        return runs
    loss = runs["loss"].copy()
    for _, curve in runs.groupby("curve"):
        if how == "blowup":
            loss[curve["lr"].idxmax()] = BLOWUP_FACTOR * curve["loss"].min()
        elif how == "spike":
            target = curve["step"] == curve.loc[curve["loss"].idxmin(), "step"] + SPIKE_STEPS
            loss[curve.index[target]] += SPIKE_RANGES * np.ptp(curve["loss"])
        else:
            raise ValueError(f"inject: {how!r} is not one of {'|'.join(INJECTIONS)}")
    return runs.assign(loss=loss)


def fit_halves(runs: pd.DataFrame, draws: int | None) -> pd.DataFrame:
    """`best_lrs` of each half-curve alone: one row per (curve, half) with the key columns."""
    rows = []
    for (curve, parity), half in runs.groupby(["curve", runs["step"] % 2]):
        results = pd.DataFrame({"phase": 2, "arm": "half", "width_mult": 1, "lr": half["lr"], "seed": 0,
                                "status": "done", "final_train_loss": half["loss"]})
        best = best_lrs(results) if draws is None else best_lrs(results, draws=draws)
        i = int(np.argmin(half["loss"].to_numpy()))
        rows.append({"curve": curve, **half.iloc[0][KEYS].to_dict(), "half": ("even", "odd")[parity],
                     "n_lrs": len(half), "grid_end": i in (0, len(half) - 1), **best.iloc[0].to_dict()})
    return pd.DataFrame(rows).drop(columns=["arm", "width_mult"])


def agreement(halves: pd.DataFrame) -> pd.Series:
    """Per curve whose halves both claim an optimum: z of the difference of their optima."""
    claimed = halves[halves["optimum_claimed"]]
    x = np.log2(claimed.pivot(index="curve", columns="half", values="lr_fit")).dropna()
    sd = claimed.pivot(index="curve", columns="half", values="opt_sd").loc[x.index]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (x["even"] - x["odd"]) / np.sqrt(sd["even"] ** 2 + sd["odd"] ** 2)


def summarize(how: str, halves: pd.DataFrame) -> dict:
    """One row of the table: claims, interval widths, agreement between halves, noise sources."""
    claimed = halves[halves["optimum_claimed"]]
    z = agreement(halves)
    sources = halves["noise_source"].value_counts()
    return {"inject": how, "halves": len(halves), "grid_end": halves["grid_end"].mean(),
            "claimed": halves["optimum_claimed"].mean(),
            "interval": float(np.log2(claimed["lr_hi"] / claimed["lr_lo"]).median()) if len(claimed) else np.nan,
            "pairs": len(z), "disagree": float((np.abs(z) > Z90).mean()) if len(z) else np.nan,
            "median_z": float(np.abs(z).median()) if len(z) else np.nan,
            "noise": " ".join(f"{k} {v}" for k, v in sources.items())}


def table(rows: list[dict]) -> str:
    """The summary rows as fixed-width text, with the targets in the header."""
    lines = [f"{'inject':8s} {'halves':>6s} {'grid end':>8s} {'claimed':>8s} {'interval':>9s} {'pairs':>5s} "
             f"{'|z|>1.645':>9s} {'med |z|':>7s}  noise source",
             f"{'target':8s} {'':>6s} {'':>8s} {TARGETS['claimed']:>8s} {TARGETS['interval']:>9s} {'':>5s} "
             f"{TARGETS['disagree']:>9s} {'(0.67)':>7s}"]
    for r in rows:
        lines.append(f"{r['inject']:8s} {r['halves']:6d} {r['grid_end']:8.0%} {r['claimed']:8.0%} "
                     f"{r['interval']:9.2f} {r['pairs']:5d} {r['disagree']:9.0%} {r['median_z']:7.2f}  {r['noise']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the Step Law MoE csv")
    parser.add_argument("--draws", type=int, default=None, help="bootstrap draws per fit (default: the library's)")
    parser.add_argument("--inject", nargs="+", default=list(INJECTIONS), choices=INJECTIONS)
    parser.add_argument("--min-lrs", type=int, default=6, help="leave out curves with fewer LRs")
    parser.add_argument("--csv", help="write one row per half-curve here")
    args = parser.parse_args()
    t0 = time.perf_counter()
    runs = load_curves(args.data, args.min_lrs)
    print(f"{runs['curve'].nunique()} curves of {args.min_lrs}+ LRs, {len(runs)} runs, from {args.data}")
    fitted = {how: fit_halves(inject(runs, how), args.draws) for how in args.inject}
    print(table([summarize(how, halves) for how, halves in fitted.items()]))
    if args.csv:
        pd.concat([h.assign(inject=how) for how, h in fitted.items()], ignore_index=True).to_csv(args.csv, index=False)
    print(f"{sum(map(len, fitted.values()))} half-curves in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
