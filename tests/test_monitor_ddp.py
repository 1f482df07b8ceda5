"""AlignmentMonitor under a real 2-process DistributedDataParallel run (gloo, CPU): the records equal
the unsharded model's on the global batch, with X the ranks' samples stacked in rank order."""

import json

import pandas as pd
import torch
from torch import nn

from gloo import run
from lrtransfer.monitor import AlignmentMonitor, read_records

WORLD, LOCAL, STEPS, EVERY = 2, 4, 4, 2
SAMPLES = {"all": 1.0, "half": 0.5}  # ⌈0.5·4⌉ = 2 images per rank


def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)


def global_batch(step: int) -> torch.Tensor:
    return torch.randn(WORLD * LOCAL, 3, 6, 6, generator=torch.Generator().manual_seed(step))


def train_step(model, opt, x):
    model(x).square().mean().backward()
    opt.step()
    opt.zero_grad()


def _worker(rank: int, out: str) -> None:
    model, opt = setup()
    ddp = nn.parallel.DistributedDataParallel(model)
    monitors = {k: AlignmentMonitor(ddp, every=EVERY, sample=s, path=f"{out}/{k}{rank}.jsonl",
                                    roles={"0.weight": "input"}) for k, s in SAMPLES.items()}
    hooks = []
    for step in range(STEPS):
        with monitors["all"].step(step), monitors["half"].step(step):
            hooks.append(sum(len(m._forward_pre_hooks) for m in model.modules()))
            train_step(ddp, opt, global_batch(step)[rank * LOCAL:(rank + 1) * LOCAL])
    with open(f"{out}/result{rank}.json", "w") as f:
        json.dump({"hooks": hooks, "last": len(monitors["all"].last)}, f)


def reference() -> dict[str, pd.DataFrame]:
    """One process, the global batch; the "half" monitor sees a forward of each rank's first 2 images."""
    model, opt = setup()
    monitors = {k: AlignmentMonitor(model, every=EVERY, sample=1.0, roles={"0.weight": "input"}) for k in SAMPLES}
    for step in range(STEPS):
        x = global_batch(step)
        with monitors["half"].step(step):
            model(torch.cat([x[r * LOCAL:r * LOCAL + 2] for r in range(WORLD)]))
            with monitors["all"].step(step):
                train_step(model, opt, x)
    return {k: m.frame() for k, m in monitors.items()}


def test_ddp_monitor_equals_the_unsharded_model(tmp_path):
    run(_worker, str(tmp_path), world=WORLD)
    r0, r1 = (json.loads((tmp_path / f"result{r}.json").read_text()) for r in range(WORLD))
    assert r0["hooks"] == r1["hooks"] == [4, 0, 4, 0]  # 2 monitors x 2 layers, on measured steps and every rank
    assert (r0["last"], r1["last"]) == (2, 0)  # records are kept on rank 0 only
    expect = reference()
    for kind in SAMPLES:
        assert not (tmp_path / f"{kind}1.jsonl").exists()
        got = read_records(tmp_path / f"{kind}0.jsonl")
        assert got["layer"].tolist() == ["0", "3"] * 2 and got["role"].tolist() == ["input", "unknown"] * 2
        pd.testing.assert_frame_equal(got, expect[kind], check_exact=False, rtol=1e-5, atol=1e-8)
