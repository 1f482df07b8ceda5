"""The optimizer config: torch's fused AdamW (the default) makes the same updates as its foreach one."""

from __future__ import annotations

import pytest
import torch

from lrtransfer.config import ConfigError, preset_dict, validate
from lrtransfer.records import jsonl
from lrtransfer.training import train


def config(fused: bool):
    raw = preset_dict("lm-tiny")
    raw["optim"] = {**raw.get("optim", {}), "fused": fused, "foreach": None if fused else True}
    raw["run"] = {**raw.get("run", {}), "steps": 15, "checkpoint_every": 0, "eval_every": 0}
    return validate(raw)


def test_the_config_builds_the_kernel_it_names():
    model = torch.nn.Linear(4, 4)
    assert config(True).optim.build(model, {"width_mult": 1.0}).defaults["fused"] is True
    foreach = config(False).optim.build(model, {"width_mult": 1.0}).defaults
    assert not foreach["fused"] and foreach["foreach"] is True


def test_fused_adamw_follows_the_foreach_trajectory(tmp_path):
    losses = {}
    for fused in (True, False):
        out = tmp_path / str(fused)
        train(config(fused), out, progress=False)
        losses[fused] = [r["train_loss"] for r in jsonl.read(out / "metrics.jsonl") if "train_loss" in r]
    assert len(losses[True]) == 15 and losses[True][0] == losses[False][0]  # same init, same batch
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)  # the same update, summed in another order
    assert losses[True][-1] < losses[True][0] - 0.1  # and it trains


def test_fused_and_foreach_together_are_refused_naming_the_field():
    raw = preset_dict("lm-tiny")
    raw["optim"] = {**raw.get("optim", {}), "foreach": True}
    with pytest.raises(ConfigError, match="optim: foreach: torch's AdamW takes fused or foreach"):
        validate(raw)
