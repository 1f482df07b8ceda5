"""Sharded models (FSDP2 ``fully_shard``, 2 gloo processes): `param_groups` and `AlignmentMonitor`
equal the unsharded model trained on the same global batch."""

import json

import pandas as pd
import torch
import torch.nn.functional as F
from torch.distributed.fsdp import fully_shard

from gloo import run
from lrtransfer.models.llama import Llama, LlamaConfig
from lrtransfer.monitor import AlignmentMonitor, read_records
from lrtransfer.scaling import param_groups, parameter_roles

WORLD, LOCAL, STEPS, EVERY = 2, 3, 4, 2  # 2 ranks x 3 sequences; steps 0 and 2 measured
SAMPLES = {"all": 1.0, "half": 0.5}  # sample fraction of each monitor: ⌈0.5·3⌉ = 2 sequences per rank


def build(width: int = 16) -> Llama:
    return Llama(LlamaConfig(width=width, depth=2, head_dim=8, vocab_size=32, seq_len=8))


def setup():
    """The width-16 model, with the same init on every rank, and its base shapes at width 8 (m = 2)."""
    torch.manual_seed(0)
    model = build()
    with torch.device("meta"):
        base = build(8)
    return model, base


def global_batch(step: int) -> torch.Tensor:
    return torch.randint(0, 32, (WORLD * LOCAL, 9), generator=torch.Generator().manual_seed(step))


def train_step(model, opt, tokens):
    F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()
    opt.step()
    opt.zero_grad()


def summary(groups):
    return [{k: g[k] for k in ("role", "lr", "weight_decay", "param_names")} for g in groups]


def _sharded_worker(rank: int, out: str) -> None:
    model, base = setup()
    for block in model.layers:
        fully_shard(block)
    fully_shard(model)
    assert type(model.layers[0].attention.wq.weight).__name__ == "DTensor"  # really sharded
    groups = param_groups(model, base, lr=1e-2, weight_decay=0.1)
    roles = parameter_roles(model, base)
    opt = torch.optim.AdamW(groups)
    monitors = {k: AlignmentMonitor(model, every=EVERY, sample=s, roles=roles, path=f"{out}/{k}{rank}.jsonl")
                for k, s in SAMPLES.items()}
    for step in range(STEPS):
        local = global_batch(step)[rank * LOCAL:(rank + 1) * LOCAL]
        with monitors["all"].step(step), monitors["half"].step(step):
            train_step(model, opt, local)
    with open(f"{out}/groups{rank}.json", "w") as f:
        json.dump(summary(groups), f)


def reference() -> dict:
    """One process, no sharding, the global batch. The "half" monitor's X: each rank's first 2 sequences,
    stacked in rank order, fed by a forward that only the monitor sees (no backward, no weight change)."""
    model, base = setup()
    groups = param_groups(model, base, lr=1e-2, weight_decay=0.1)
    roles = parameter_roles(model, base)
    opt = torch.optim.AdamW(groups)
    monitors = {k: AlignmentMonitor(model, every=EVERY, sample=1.0, roles=roles) for k in SAMPLES}
    for step in range(STEPS):
        tokens = global_batch(step)
        with monitors["half"].step(step):
            model(torch.cat([tokens[r * LOCAL:r * LOCAL + 2, :-1] for r in range(WORLD)]))
            with monitors["all"].step(step):
                train_step(model, opt, tokens)
    return {k: m.frame() for k, m in monitors.items()} | {"groups": summary(groups)}


def test_fsdp2_monitor_equals_the_unsharded_model(tmp_path):
    run(_sharded_worker, str(tmp_path), world=WORLD)
    expect = reference()
    for rank in range(WORLD):  # the sharded model's groups: same roles, rates and names on every rank
        assert json.loads((tmp_path / f"groups{rank}.json").read_text()) == expect["groups"]
    assert {g["lr"] for g in expect["groups"]} == {1e-2, 5e-3}  # m = 2: hidden and output LRs are η/m
    for kind in SAMPLES:
        assert not (tmp_path / f"{kind}1.jsonl").exists()  # only rank 0 records
        got = read_records(tmp_path / f"{kind}0.jsonl")
        assert len(got) == 2 * 15 and set(got["step"]) == {0, 2}  # 7 Linears per block x 2, and the readout
        assert (got["fan_out"] * got["fan_in"] >= 16 * 16).all()  # whole matrices, not shards
        pd.testing.assert_frame_equal(got, expect[kind], check_exact=False, rtol=1e-5, atol=1e-8)
    full, half = (read_records(tmp_path / f"{k}0.jsonl") for k in SAMPLES)
    assert (half["input_norm"] < 0.99 * full["input_norm"]).all()  # the sample really is smaller
