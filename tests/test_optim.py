"""The optimizer config: torch's fused AdamW (the default) makes the same updates as its foreach one."""

from __future__ import annotations

import pytest
import torch

from lrtransfer.config import ConfigError, preset_dict, validate
from lrtransfer.training.distributed import init_distributed
from lrtransfer.training.setup import build_parts


def losses(fused: bool, steps: int = 15) -> list[float]:
    raw = preset_dict("lm-tiny")
    raw["optim"] = {**raw.get("optim", {}), "fused": fused, "foreach": None if fused else True}
    config = validate(raw)
    parts = build_parts(config, torch.device("cpu"), init_distributed(torch.device("cpu")))
    out = []
    for step in range(steps):
        x, y = parts.data.train_batch(step, config.run.batch_size, config.run.seed)
        loss = parts.data.loss(parts.model(x), y)
        loss.backward()
        parts.optimizer.step()
        parts.optimizer.zero_grad(set_to_none=True)
        parts.scheduler.step()
        out.append(loss.item())
    return out


def test_fused_adamw_follows_the_foreach_trajectory():
    fused, foreach = losses(True), losses(False)
    assert fused[0] == foreach[0]  # same init, same batch
    assert fused == pytest.approx(foreach, rel=1e-4)  # the same update, summed in another order
    assert fused[-1] < fused[0] - 0.1  # and it trains


def test_fused_and_foreach_together_are_refused_naming_the_field():
    raw = preset_dict("lm-tiny")
    raw["optim"] = {**raw.get("optim", {}), "foreach": True}
    with pytest.raises(ConfigError, match="optim: foreach: torch's AdamW takes fused or foreach"):
        validate(raw)
