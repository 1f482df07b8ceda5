"""Checkpoints with real files: checksums, the previous checkpoint as a fallback, one line per fallback,
stale temp files, and SIGKILL at random moments of a process that does nothing but save."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import random
import subprocess
import time

import pytest
import torch

from lrtransfer.records import checkpoint


def _parts(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (1 + s))
    return model, opt, sched


def _train(model, opt, sched, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        loss = model(torch.randn(8, 16)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        losses.append(loss.item())
    return losses


@pytest.fixture
def run(tmp_path):
    """A folder with checkpoints at steps 10 and 20; yields (folder, parts, snapshots by step)."""
    model, opt, sched = _parts()
    snapshots = {}
    for step in (10, 20):
        _train(model, opt, sched, 10)
        checkpoint.save(tmp_path, step=step, model=model, optimizer=opt, scheduler=sched)
        snapshots[step] = {k: v.clone() for k, v in model.state_dict().items()}
    return tmp_path, (model, opt, sched), snapshots


def _same(state, snapshot) -> bool:
    return all(torch.equal(state["model"][k], v) for k, v in snapshot.items())


def _flip_64_bytes_in_tensor_data(path, tensor) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(tensor.numpy().tobytes())
    assert at > 0, "tensor bytes not found in the checkpoint"
    at += tensor.numel() * tensor.element_size() // 2
    data[at:at + 64] = bytes(b ^ 0xFF for b in data[at:at + 64])
    path.write_bytes(bytes(data))


DAMAGE = {
    "flipped": ("failed its checksum", lambda p, s: _flip_64_bytes_in_tensor_data(p, s["2.weight"])),
    "truncated": ("failed its checksum", lambda p, s: p.write_bytes(p.read_bytes()[:p.stat().st_size // 2])),
    "garbage": ("failed its checksum", lambda p, s: p.write_bytes(random.Random(0).randbytes(p.stat().st_size))),
    "empty": ("is empty", lambda p, s: p.write_bytes(b"")),
    "no checksum": ("has no checksum (checkpoint.pt.sha256)",
                    lambda p, s: (p.parent / "checkpoint.pt.sha256").unlink()),
}


def test_save_keeps_the_previous_checkpoint_with_checksums(run, caplog):
    folder, _, snapshots = run
    for name in (checkpoint.CHECKPOINT, checkpoint.PREVIOUS):
        digest = (folder / f"{name}.sha256").read_text().strip()
        assert digest == hashlib.sha256((folder / name).read_bytes()).hexdigest()  # `sha256sum` agrees
    state = checkpoint.load(folder)
    assert state["step"] == 20 and _same(state, snapshots[20]) and caplog.records == []
    previous, _ = checkpoint.verified(folder / checkpoint.PREVIOUS)
    assert previous["step"] == 10 and _same(previous, snapshots[10])


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(run, caplog, damage):
    folder, (model, opt, sched), snapshots = run
    why, spoil = DAMAGE[damage]
    latest = folder / checkpoint.CHECKPOINT
    spoil(latest, snapshots[20])
    damaged = latest.read_bytes()
    with caplog.at_level(logging.WARNING, logger="lrtransfer.checkpoint"):
        state = checkpoint.load(folder)
    assert state["step"] == 10 and _same(state, snapshots[10])
    [record] = caplog.records
    assert record.getMessage() == f"checkpoint: {latest} {why}; resuming from checkpoint.prev.pt (step 10)"
    assert (folder / "checkpoint.pt.bad").read_bytes() == damaged  # kept for a post-mortem
    assert checkpoint.verified(latest)[0]["step"] == 10  # repaired: the previous one is the latest again
    checkpoint.save(folder, step=20, model=model, optimizer=opt, scheduler=sched)
    assert checkpoint.verified(folder / checkpoint.PREVIOUS)[0]["step"] == 10  # the good one was kept


def test_both_damaged_start_clean_with_one_line(run, caplog):
    folder, _, snapshots = run
    DAMAGE["flipped"][1](folder / checkpoint.CHECKPOINT, snapshots[20])
    (folder / checkpoint.PREVIOUS).write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="lrtransfer.checkpoint"):
        assert checkpoint.load(folder) is None
    [record] = caplog.records
    assert record.getMessage() == (f"checkpoint: {folder / checkpoint.CHECKPOINT} failed its checksum and "
                                   "checkpoint.prev.pt is empty; starting from step 0")
    assert not (folder / checkpoint.CHECKPOINT).exists() and not (folder / checkpoint.PREVIOUS).exists()


def test_a_file_that_matches_its_checksum_but_is_not_a_weights_only_checkpoint(run, caplog):
    folder, _, _ = run
    latest = folder / checkpoint.CHECKPOINT
    torch.save({"step": 30, "model": logging.getLogger("x")}, latest)  # pickles an object: refused by weights_only
    (folder / "checkpoint.pt.sha256").write_text(hashlib.sha256(latest.read_bytes()).hexdigest())
    with caplog.at_level(logging.WARNING, logger="lrtransfer.checkpoint"):
        assert checkpoint.load(folder)["step"] == 10
    assert "does not load (UnpicklingError" in caplog.records[0].getMessage()
    torch.save({"step": 30}, latest)  # loads, but is not one of ours
    (folder / "checkpoint.pt.sha256").write_text(hashlib.sha256(latest.read_bytes()).hexdigest())
    assert checkpoint.verified(latest) == (None, f"is not a checkpoint (expected the keys {list(checkpoint.KEYS)})")


def test_no_latest_checkpoint_means_a_clean_start(run, caplog):
    folder, _, _ = run
    (folder / checkpoint.CHECKPOINT).unlink()  # e.g. a forced re-run that removed only the latest
    assert checkpoint.load(folder) is None and caplog.records == []
    assert not (folder / checkpoint.PREVIOUS).exists()  # never resumed later either
    checkpoint.remove(folder)
    assert list(folder.iterdir()) == []


def test_load_removes_temp_files_of_killed_writes(run):
    folder, _, _ = run
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [folder / "checkpoint.tmp", folder / f".checkpoint.pt.{dead.pid}.00ff00ff.tmp",
             folder / f".checkpoint.pt.sha256.{dead.pid}.00ff00ff.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    assert checkpoint.load(folder)["step"] == 20
    assert not any(path.exists() for path in stale)


def test_restore_continues_bit_for_bit(tmp_path):
    model, opt, sched = _parts()
    _train(model, opt, sched, 10)
    torch.manual_seed(123)
    checkpoint.save(tmp_path, step=10, model=model, optimizer=opt, scheduler=sched)
    whole = _train(model, opt, sched, 10)
    model, opt, sched = _parts(seed=1)  # different weights and RNG: everything must come from the file
    assert checkpoint.restore(checkpoint.load(tmp_path), model=model, optimizer=opt, scheduler=sched) == 10
    assert _train(model, opt, sched, 10) == whole


# --- SIGKILL while saving --------------------------------------------------------------------------

KILLS = 24


def _saver(folder, saved, model, opt, sched) -> None:
    """A forked process that only saves: the checkpoint of step s holds weights all equal to s."""
    state = checkpoint.load(folder)
    for step in range(state["step"] + 1 if state else 1, 10**9):
        with torch.no_grad():
            model.weight.fill_(step)
        checkpoint.save(folder, step=step, model=model, optimizer=opt, scheduler=sched)
        saved.value = step  # one aligned int in shared memory: a kill cannot tear it


@pytest.mark.slow
def test_sigkill_at_random_moments_of_saving_never_loses_a_checkpoint(tmp_path, caplog):
    ctx, rng, traces = mp.get_context("fork"), random.Random(10), 0  # fork: no interpreter start per kill
    saved = ctx.Value("q", 0, lock=False)
    model = torch.nn.Linear(512, 512)  # 1 MiB of weights, 2 MiB of AdamW state: a write takes a while
    opt = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 512)).sum().backward()  # once here, not in every child (the first backward is slow)
    opt.step()
    parts = (model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0))
    for _ in range(KILLS):
        start = saved.value
        proc = ctx.Process(target=_saver, args=(tmp_path, saved, *parts))
        proc.start()
        deadline = time.monotonic() + 30
        while saved.value == start and time.monotonic() < deadline:  # from its first save on it only saves
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.2))
        proc.kill()
        proc.join()
        last, left = saved.value, [p.name for p in tmp_path.glob(".*.tmp")]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="lrtransfer.checkpoint"):
            state = checkpoint.load(tmp_path)
        traces += bool(left) + len(caplog.records)
        assert state["step"] in (last, last + 1)  # the last completed save, or one that finished unannounced
        assert torch.equal(state["model"]["weight"], torch.full((512, 512), float(state["step"])))
        assert not list(tmp_path.glob(".*.tmp"))
        print(f"killed after save {last}: resumed at {state['step']}, temp files {left}, "
              f"fallback: {[r.getMessage().split('; ')[-1] for r in caplog.records]}")
    assert traces >= 1, "no kill landed inside a write: the test did not test that"
