"""Does the LR transfer for *my* model, on *my* data, in *my* loop? An LR-transfer study of a custom model.

    python examples/custom_model_study.py --out runs/mine           # the study, about 4 minutes on 2 cores
    python examples/custom_model_study.py --tiny --out /tmp/tiny   # a smoke run in seconds
    python examples/custom_model_study.py --csv mine.csv --target label --out runs/mine-csv

The data is a CSV of numeric feature columns and an integer class column (default: 20,000 rows of
a 10-class problem that scikit-learn generates, 5% of the labels flipped, written to a CSV first; a
trial sees each row about twice, so the train loss measures learning, not memorisation). The model
is the user's own `nn.Module`; the objective is the user's own training loop, which reports to the
trial. `lrtransfer.Study` plans the two-phase sweep over widths, base LRs and weight-decay rules,
runs it on worker processes (they import this file by name, hence the `__main__` guard), resumes it
when re-run, and writes the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

import lrtransfer


class GatedResNet(nn.Module):
    """The user's model (no built-in family): an input projection, gated residual blocks, a readout."""

    def __init__(self, d_in: int, width: int, n_classes: int, depth: int = 2):
        super().__init__()
        self.proj = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(nn.ModuleDict({"norm": nn.LayerNorm(width), "gate": nn.Linear(width, 2 * width),
                                                   "out": nn.Linear(width, width)}) for _ in range(depth))
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        for b in self.blocks:
            a, g = b["gate"](b["norm"](h)).chunk(2, dim=-1)
            h = h + b["out"](a * F.silu(g))
        return self.head(h)


def load(csv: str, target: str) -> tuple[torch.Tensor, ...]:
    """Features scaled to [0, 1] and integer labels; the last fifth of the rows is validation."""
    df = pd.read_csv(csv)
    x = torch.tensor(df.drop(columns=[target]).to_numpy(), dtype=torch.float32)
    x = (x - x.min(0).values) / (x.max(0).values - x.min(0).values).clamp_min(1e-8)
    y = torch.tensor(df[target].to_numpy(), dtype=torch.long)
    n = len(df) * 4 // 5
    return x[:n], y[:n], x[n:], y[n:]


def objective(trial: lrtransfer.Trial) -> None:
    """One trial: the user's training loop, with the trial's param groups, schedule and monitor."""
    x, y, x_val, y_val = load(trial.params["csv"], trial.params["target"])
    n_classes = int(y.max()) + 1
    model = GatedResNet(x.shape[1], trial.width, n_classes)
    base = GatedResNet(x.shape[1], trial.base_width, n_classes)  # base shapes: which dimensions scale
    opt = torch.optim.AdamW(trial.param_groups(model, base), betas=(0.9, 0.95))
    schedule = lrtransfer.schedules.lambda_lr(opt, trial.config.lr_multipliers())  # the spec's schedule
    monitor = trial.monitor(model)
    batches = torch.Generator().manual_seed(trial.seed)
    for step in range(trial.steps):
        idx = torch.randint(len(x), (trial.params["batch_size"],), generator=batches)
        with monitor.step(step):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad()
        schedule.step()
        trial.log(step, loss.item())
    with torch.no_grad():
        trial.finish(val_loss=F.cross_entropy(model(x_val), y_val).item())


def example_csv(path: Path, rows: int = 20_000) -> Path:
    """A stand-in for the user's data: 40 feature columns (20 informative) and `label`, as a CSV."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=40, n_informative=20, n_classes=10, flip_y=0.05,
                               random_state=0)
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])]).assign(label=y)
    df.to_csv(path, index=False, float_format="%.5g")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/custom-model-study", help="study folder (re-run to resume)")
    parser.add_argument("--csv", help="your CSV (default: a generated one, written into --out)")
    parser.add_argument("--target", default="label", help="the CSV's class column")
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps per trial")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="2,000 rows, widths 1-2x, 3 LRs, 40 steps: seconds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = Path(args.csv).resolve() if args.csv else example_csv(out / "data.csv", 2_000 if args.tiny else 20_000)
    steps = 40 if args.tiny else args.steps
    study = lrtransfer.Study(
        objective, name="custom-model", base_width=32,
        params={"csv": str(csv), "target": args.target, "batch_size": 64},
        widths=[1, 2] if args.tiny else [1, 2, 4, 8],
        lrs=[2e-3, 8e-3, 3.2e-2] if args.tiny else {"min": 1e-3, "max": 6.4e-2, "num": 7},
        phase1_lrs=[4e-3, 1.6e-2] if args.tiny else [5e-4, 2e-3, 8e-3, 3.2e-2],
        rules=["standard", "independent"], seeds=[0],
        overrides={"run.steps": steps, "run.final_window": max(steps // 10, 1), "optim.weight_decay": 0.5,
                   "monitor.every": max(steps // 10, 1), "monitor.sample": 0.25},
    )
    result = study.run(out, workers=args.workers)
    print("\n".join(result.verdicts))
    print(f"report: {result.report} ({result.wall_s:.0f} s)")


if __name__ == "__main__":
    main()
