"""Fault injection with real processes and real files: a full disk (a small tmpfs), a damaged checkpoint
under a real training run, and SIGKILL at random moments of `lrtransfer train`. Each asserts that
nothing was lost: the final losses equal an uninterrupted run bit for bit, or the write failed cleanly."""

from __future__ import annotations

import errno
import logging
import os
import random
import subprocess
import sys
import time

import pytest
import torch

from lrtransfer.config import resolve
from lrtransfer.records import atomic, checkpoint
from lrtransfer.records.jsonl import read
from lrtransfer.training import train

OVERRIDES = ["run.threads=1", "run.steps=40", "run.checkpoint_every=10", "model.width=32"]


# --- a full disk -----------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs mounted on a temp folder (needs root and mount rights; else the test skips)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(folder, keep: int = 0) -> None:
    """Fill the file system of `folder` until at most `keep` bytes are free (4 KiB at a time)."""
    with open(folder / "filler", "wb", buffering=0) as f:
        while (st := os.statvfs(folder)).f_bavail * st.f_frsize > keep:
            try:
                f.write(b"\0" * 4096)
            except OSError as err:
                assert err.errno == errno.ENOSPC
                return


def _enospc(call) -> None:
    with pytest.raises(OSError) as err:
        call()
    assert err.value.errno == errno.ENOSPC


def test_full_disk_summary_write_fails_cleanly(small_disk):
    path = small_disk / "summary.json"
    atomic.write_json(path, {"status": "running"})
    fill(small_disk)
    _enospc(lambda: atomic.write_json(path, {"status": "done", "pad": "x" * 20000}))
    assert atomic.read_json(path) == {"status": "running"}
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "summary.json"]  # no partial file
    (small_disk / "filler").unlink()  # space again: the same write goes through
    atomic.write_json(path, {"status": "done"})
    assert atomic.read_json(path) == {"status": "done"}


def _small_parts():
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 64)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 64)).sum().backward()
    opt.step()
    return {"model": model, "optimizer": opt, "scheduler": torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)}


FILES = ["checkpoint.prev.pt", "checkpoint.prev.pt.sha256", "checkpoint.pt", "checkpoint.pt.sha256", "filler"]


def test_full_disk_checkpoint_write_fails_cleanly(small_disk, caplog):
    parts = _small_parts()
    checkpoint.save(small_disk, step=10, **parts)
    fill(small_disk)
    _enospc(lambda: checkpoint.save(small_disk, step=20, **parts))
    assert sorted(p.name for p in small_disk.iterdir()) == FILES  # no partial file
    assert checkpoint.load(small_disk)["step"] == 10 and caplog.records == []  # intact, verified


def test_full_disk_between_checkpoint_and_checksum_falls_back(small_disk, caplog):
    parts = _small_parts()
    checkpoint.save(small_disk, step=20, **parts)  # the first: the next save frees no space when it rotates
    size = (small_disk / checkpoint.CHECKPOINT).stat().st_size
    fill(small_disk, keep=-(-size // 4096) * 4096)  # room for the checkpoint's pages, none for its checksum
    _enospc(lambda: checkpoint.save(small_disk, step=30, **parts))
    assert sorted(p.name for p in small_disk.iterdir()) == FILES
    with caplog.at_level(logging.WARNING, logger="lrtransfer.checkpoint"):
        assert checkpoint.load(small_disk)["step"] == 20
    assert [r.getMessage().split("; ")[1] for r in caplog.records] == ["resuming from checkpoint.prev.pt (step 20)"]


# --- a damaged checkpoint under a real run --------------------------------------------------------

def _config():
    return resolve(preset="lm-tiny", overrides=OVERRIDES)


def _rows(folder):
    return read(folder / "metrics.jsonl")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its metric rows and summary."""
    out = tmp_path_factory.mktemp("reference") / "run"
    summary = train(_config(), out, progress=False)
    return _rows(out), summary


def _flip_64_bytes_inside_tensor_data(path) -> None:
    state = torch.load(path, weights_only=True)
    tensor = max(state["model"].values(), key=torch.Tensor.numel)
    data = bytearray(path.read_bytes())
    at = data.find(tensor.numpy().tobytes()) + tensor.numel() * tensor.element_size() // 2
    data[at:at + 64] = bytes(b ^ 0xFF for b in data[at:at + 64])
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("damaged, resumed_at", [(["checkpoint.pt"], 20),
                                                 (["checkpoint.pt", "checkpoint.prev.pt"], 0)])
def test_resume_past_a_damaged_checkpoint_is_bit_identical(tmp_path, reference, caplog, damaged, resumed_at):
    out = tmp_path / "run"
    train(_config(), out, progress=False)
    (out / "summary.json").unlink()  # as if killed after the checkpoint of step 30, before finishing
    for name in damaged:
        _flip_64_bytes_inside_tensor_data(out / name)
    with caplog.at_level(logging.WARNING, logger="lrtransfer.checkpoint"):
        summary = train(_config(), out, progress=False)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.endswith(f"(step {resumed_at})" if resumed_at else "starting from step 0")
    rows, whole = reference
    assert _rows(out) == rows  # every loss, LR and validation row, bit for bit, none twice
    assert [summary[k] for k in ("status", "steps", "final_train_loss", "val_loss")] == [
        whole[k] for k in ("status", "steps", "final_train_loss", "val_loss")]


# --- SIGKILL at random moments of `lrtransfer train` ----------------------------------------------

def _losses_written(path) -> int:
    try:
        return path.read_bytes().count(b'"train_loss"')
    except FileNotFoundError:
        return 0


def _run_and_kill(args: list[str], out, at_step: int | None) -> str:
    """Start `lrtransfer train`; kill it with SIGKILL once `at_step` losses are written (None: let it
    finish). Returns where the kill landed."""
    proc = subprocess.Popen([sys.executable, "-m", "lrtransfer.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    if at_step is None:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
        return "finished"
    deadline = time.monotonic() + 120
    while proc.poll() is None and _losses_written(out / "metrics.jsonl") < at_step and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.kill()
    if proc.wait() == 0:
        return "finished before the kill"
    temps = sorted(p.name for p in out.glob(".*.tmp"))
    latest, why = checkpoint.verified(out / checkpoint.CHECKPOINT)
    return (f"killed at {_losses_written(out / 'metrics.jsonl')} losses written, temp files {temps}, "
            f"latest checkpoint {latest['step'] if latest else why}")


@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_bit_identically(tmp_path, reference):
    rng = random.Random(10)
    # Ascending, so that each kill meets a trainer that has got past its resume: at once (0), two
    # random steps, right after the losses of a checkpoint step (10, 20: during its write), and after
    # the last step (40: during the final evaluation and writes); then a run to the end.
    kill_at = [0, *sorted({10, 20, *rng.sample(range(1, 40), 2)}), 40, None]
    out = tmp_path / "run"
    args = ["train", "--preset", "lm-tiny", *OVERRIDES, "--out", str(out)]
    landed = [_run_and_kill(args, out, k) for k in kill_at]
    print("\n".join(f"kill at {k}: {where}" for k, where in zip(kill_at, landed)))
    rows, whole = reference
    assert _rows(out) == rows
    summary = atomic.read_json(out / "summary.json")
    assert [summary[k] for k in ("status", "steps", "final_train_loss", "val_loss")] == [
        whole[k] for k in ("status", "steps", "final_train_loss", "val_loss")]
    assert sum(where.startswith("killed") for where in landed) >= 5  # the kills hit a running trainer
