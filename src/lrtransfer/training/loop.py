"""One training run, top to bottom: build, resume, then forward → backward → step → log.

Instrumentation (alignment monitor, metric streams, checkpoints) plugs in around the loop; the loop
itself reads like nanoGPT's. Everything that varies between runs comes from the `RunConfig`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from lrtransfer.config import RunConfig, dump_yaml
from lrtransfer.monitor import AlignmentMonitor
from lrtransfer.training import checkpoint
from lrtransfer.training.distributed import Dist, init_distributed, resolve_device, shutdown
from lrtransfer.training.progress import progress_bar
from lrtransfer.training.runlog import MetricLog, read_jsonl, tidy, truncate_from
from lrtransfer.training.setup import Parts, build_parts, group_lr_names

SUMMARY = "summary.json"


def train(config: RunConfig, out: str | Path, *, store=None, sweep: str | None = None,
          tags: dict | None = None, force: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Train one run into `out` (resuming from its checkpoint if there is one); returns the summary.

    A run that already finished (`summary.json` in `out`, or the same config hash `done` in `store`)
    is not re-run unless `force`. A loss that is NaN/inf or above `run.max_loss` ends the run early
    with status `diverged`; it never raises. Any other exception is recorded as `failed` and re-raised.
    """
    out = Path(out)
    device = resolve_device(config.run.device)
    dist = init_distributed(device)
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    if not force:
        _check_same_config(out, config)
    finished = dist.broadcast(None if force or not dist.is_main else _finished(out, store, config))
    if finished is not None:
        shutdown(dist)
        return {**finished, "skipped": "already finished; pass force=True (--force) to re-run"}
    run_id = None
    if dist.is_main:
        if force:
            for name in (SUMMARY, checkpoint.CHECKPOINT, "metrics.jsonl", "alignment.jsonl"):
                (out / name).unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_yaml(config))
        if store is not None:
            run_id = store.start_run(config.to_dict(), sweep=sweep, tags=tags, force=True)
    try:
        summary = _train(config, out, device, dist, progress)
    except Exception as err:
        if dist.is_main:
            finish_run(out, store, run_id, {"status": "failed", "error": repr(err)})
        raise
    finally:
        shutdown(dist)
    if dist.is_main:
        finish_run(out, store, run_id, summary)
    return summary


def _train(config: RunConfig, out: Path, device: torch.device, dist: Dist, progress: bool | None) -> dict:
    parts = build_parts(config, device, dist)
    model, opt, sched, data = parts.model, parts.optimizer, parts.scheduler, parts.data
    start = _resume(out, parts)
    log = MetricLog(out / "metrics.jsonl", resume_step=start) if dist.is_main else None
    monitor = _monitor(config, parts, out, start)
    lr_names = group_lr_names(opt)
    cfg, local = config.run, dist.local_slice(config.run.batch_size)
    autocast = _autocast(config, device)
    diverged_at, t0, steps_done = None, time.perf_counter(), 0
    bar = progress_bar(cfg.steps, start, enabled=dist.is_main and progress)
    for step in range(start, cfg.steps):
        x, y = (t[local].to(device) for t in data.train_batch(step, cfg.batch_size, cfg.seed))
        with monitor.step(step):
            with autocast:
                loss = data.loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        lrs = {name: g["lr"] for name, g in zip(lr_names, opt.param_groups)}
        sched.step()
        loss_value = dist.mean(loss.detach().float()).item()
        steps_done += 1
        if log:
            log.write({"step": step, "train_loss": loss_value, **lrs})
        bar.update(step, loss_value)
        if not math.isfinite(loss_value) or loss_value > cfg.max_loss:
            diverged_at = step
            break
        last = step + 1 == cfg.steps
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and not last and log:
            log.write({"step": step, "val_loss": evaluate(parts, device)})
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and not last and dist.is_main:
            checkpoint.save(out, step=step + 1, model=parts.raw_model, optimizer=opt, scheduler=sched)
    bar.close()
    wall = time.perf_counter() - t0
    if not dist.is_main:
        return {}
    val = evaluate(parts, device) if diverged_at is None else float("nan")
    log.write({"step": cfg.steps if diverged_at is None else diverged_at, "val_loss": val})
    rows = log.rows()
    log.close()
    return _summary(config, parts, rows, val, diverged_at, wall, steps_done, out)


@torch.no_grad()
def evaluate(parts: Parts, device: torch.device) -> float:
    """Mean validation loss over the dataset's fixed validation batches (rank 0, unwrapped model)."""
    model = parts.raw_model
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in parts.data.val_batches(parts.eval_batch_size):
        n = len(x)
        total += parts.data.loss(model(x.to(device)), y.to(device)).item() * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


def _resume(out: Path, parts: Parts) -> int:
    state = checkpoint.load(out)
    if state is None:
        return 0
    return checkpoint.restore(state, model=parts.raw_model, optimizer=parts.optimizer, scheduler=parts.scheduler)


def _monitor(config: RunConfig, parts: Parts, out: Path, start: int):
    mc = config.monitor
    if not mc.enabled:
        return _NoMonitor()
    path = out / "alignment.jsonl"
    if parts.dist.is_main:
        truncate_from(path, start)
    return AlignmentMonitor(parts.model, every=mc.every, sample=mc.sample, layers=mc.layers,
                            path=path, roles=parts.roles)


class _NoMonitor:
    def step(self, step: int):
        return contextlib.nullcontext()


def _autocast(config: RunConfig, device: torch.device):
    if config.run.bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _summary(config: RunConfig, parts: Parts, rows: list[dict], val: float, diverged_at: int | None,
             wall: float, steps_done: int, out: Path) -> dict[str, Any]:
    losses = [float(r["train_loss"]) for r in rows if "train_loss" in r]
    window = losses[-config.run.final_window:]
    items = config.run.batch_size * parts.items_per_sample
    return {
        "status": "diverged" if diverged_at is not None else "done",
        "steps": len(losses),
        "final_train_loss": sum(window) / len(window) if window and diverged_at is None else float("nan"),
        "val_loss": val,
        "diverged_at": diverged_at,
        "wall_s": wall,
        "items_per_s": items * steps_done / wall if wall > 0 else float("nan"),
        "items": parts.items_name,
        "width": parts.width,
        "width_mult": parts.width_mult,
        "n_params": sum(p.numel() for p in parts.raw_model.parameters()),
        "folder": str(out),
    }


def _check_same_config(out: Path, config: RunConfig) -> None:
    path = out / "config.yaml"
    if path.is_file() and path.read_text() != dump_yaml(config):
        raise ValueError(f"out: {out} holds a run of a different config; choose another folder")


def _finished(out: Path, store, config: RunConfig) -> dict[str, Any] | None:
    """The summary of an already finished identical run, if any."""
    path = out / SUMMARY
    if path.is_file():
        summary = json.loads(path.read_text())
        if summary.get("status") in ("done", "diverged"):
            return summary
    if store is not None:
        row = store.find(store_hash(config))
        if row is not None and row.get("status") in ("done", "diverged"):
            return row.get("summary")
    return None


def store_hash(config: RunConfig) -> str:
    from lrtransfer.store import config_hash

    return config_hash(config.to_dict())


def finish_run(out: Path, store, run_id, summary: dict[str, Any]) -> None:
    """Write `summary.json` into the run folder `out`, then record the run in `store` (if given): its
    metric series and alignment records read from the folder's JSON-lines files, then its status.
    Also used by the Ray sweep executor, whose driver writes the folder files of a remote run."""
    (out / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
    if store is None or run_id is None:
        return
    if summary["status"] != "failed":
        store.log_series(run_id, list(tidy(read_jsonl(out / "metrics.jsonl"))))
        align = read_jsonl(out / "alignment.jsonl")
        if align:
            store.log_alignment(run_id, align)
    store.finish(run_id, summary["status"], summary)
