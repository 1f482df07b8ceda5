"""coord_check of an FSDP2 (``fully_shard``) model on 2 gloo processes equals the unsharded check."""

import pandas as pd
import pytest
import torch.nn.functional as F
from torch.distributed.fsdp import fully_shard

from gloo import run
from lrtransfer.coord import coord_check
from test_coord_check import MLP, data

WORLD, LOCAL = 2, 4
# sample=1: the monitor's X is the whole global batch both ways (test_monitor_fsdp covers sample < 1).
SETTINGS = dict(widths=[16, 32], base_width=16, loss=F.mse_loss, lr=1e-2, weight_decay=0.1, steps=4, every=3,
                sample=1.0)


def mlp(width: int) -> MLP:
    return MLP(width, readout="sp")  # a non-zero readout, so every layer has a gradient at step 0


def sharded_mlp(width: int) -> MLP:
    model = mlp(width)
    fully_shard(model.hid)
    return fully_shard(model)


def _worker(rank: int, out: str) -> None:
    full = data(batch=WORLD * LOCAL)
    mine = slice(rank * LOCAL, (rank + 1) * LOCAL)
    assert type(sharded_mlp(16).hid.weight).__name__ == "DTensor"
    cc = coord_check(sharded_mlp, batches=lambda step: tuple(t[mine] for t in full(step)), **SETTINGS)
    if rank == 0:
        cc.frame.to_pickle(f"{out}/frame.pkl")
        cc.flags.to_pickle(f"{out}/flags.pkl")


@pytest.mark.slow  # two coord checks, one of them on 2 spawned processes
def test_coord_check_of_an_fsdp2_model_equals_the_unsharded_check(tmp_path):
    run(_worker, str(tmp_path), world=WORLD)
    expect = coord_check(mlp, batches=data(batch=WORLD * LOCAL), **SETTINGS)
    got = pd.read_pickle(tmp_path / "frame.pkl")
    assert len(got) == 2 * 4 * 6 and got["alignment_ratio"].notna().sum() == 2 * 4 * 3  # widths x steps x leaves
    pd.testing.assert_frame_equal(got, expect.frame, check_exact=False, rtol=1e-5, atol=1e-8)
    pd.testing.assert_frame_equal(pd.read_pickle(tmp_path / "flags.pkl"), expect.flags, check_exact=False, rtol=1e-4)
