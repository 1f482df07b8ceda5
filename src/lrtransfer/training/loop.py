"""One training run, top to bottom: build, resume, then forward → backward → step → log.

Instrumentation (alignment monitor, metric streams, checkpoints) plugs in around the loop; the loop
itself reads like nanoGPT's. Everything that varies between runs comes from the `RunConfig`; what
the run reports is recorded by `lrtransfer.records.record` from the records held in memory.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from lrtransfer.config import ConfigError, RunConfig, dump_yaml
from lrtransfer.data import TextDataConfig
from lrtransfer.records import atomic, checkpoint
from lrtransfer.records.record import ALIGNMENT, CONFIG, METRICS, SUMMARY, RunRecords, reconcile, record_run
from lrtransfer.records.runlog import MetricLog, truncate_from
from lrtransfer.records.store import DIVERGED, DONE, FAILED, SKIPPED
from lrtransfer.training.distributed import Dist, init_distributed, resolve_device, shutdown
from lrtransfer.training.progress import progress_bar
from lrtransfer.training.setup import Parts, build_parts


def train(config: RunConfig, out: str | Path, *, store=None, sweep: str | None = None,
          tags: dict | None = None, force: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Train one run into `out` (resuming from its checkpoint if there is one); returns the summary.

    A run that already finished (a finished `summary.json` in `out`, or the same config hash
    finished in `store`) is not re-run unless `force`. A loss that is NaN/inf or above
    `run.max_loss` ends the run early with status `diverged`; it never raises. A bad input raises
    `ConfigError` (`preflight`) before anything is written or recorded (in a `sweep`, only its store
    row, `failed` with the error, so the sweep's status says why); any other exception is recorded as
    `failed` and re-raised.
    """
    return run(config, out, store=store, sweep=sweep, tags=tags, force=force, progress=progress).summary


def run(config: RunConfig, out: str | Path, *, store=None, sweep: str | None = None, tags: dict | None = None,
        force: bool = False, progress: bool | None = None) -> RunRecords:
    """`train`, returning everything the run recorded (summary, metric rows, alignment records)."""
    out = Path(out)
    try:
        preflight(config, out, force=force)
    except ConfigError as err:
        if store is not None and sweep is not None:  # a sweep's run: its row (keyed by hash, locking no
            _refused(config, store, sweep, tags, err)  # folder) says why it did not train
        raise
    device = resolve_device(config.run.device)
    dist = init_distributed(device)
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    finished = dist.broadcast(None if force or not dist.is_main else reconcile(out, store, config.to_dict(), sweep))
    if finished is not None:
        shutdown(dist)
        return RunRecords({**finished, SKIPPED: "already finished; pass force=True (--force) to re-run"})
    run_id = _start(config, out, store, sweep, tags, force) if dist.is_main else None
    try:
        records = _train(config, out, device, dist, progress)
    except Exception as err:
        if dist.is_main:
            record_run(out, store, run_id, RunRecords({"status": FAILED, "error": repr(err)}))
        raise
    finally:
        shutdown(dist)
    if dist.is_main:
        record_run(out, store, run_id, records)
    return records


def _refused(config: RunConfig, store, sweep: str, tags: dict | None, err: ConfigError) -> None:
    run_id = store.start_run(config.to_dict(), sweep=sweep, tags=tags)
    store.finish(run_id, FAILED, {"status": FAILED, "error": repr(err)})


def _start(config: RunConfig, out: Path, store, sweep: str | None, tags: dict | None, force: bool) -> int | None:
    """Prepare the folder (emptied when forced), write its config, open the store row."""
    if force:
        for name in (SUMMARY, METRICS, ALIGNMENT):
            (out / name).unlink(missing_ok=True)
        checkpoint.remove(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / CONFIG, dump_yaml(config))
    return None if store is None else store.start_run(config.to_dict(), sweep=sweep, tags=tags, force=True)


def _train(config: RunConfig, out: Path, device: torch.device, dist: Dist, progress: bool | None) -> RunRecords:
    parts = build_parts(config, device, dist)
    model, opt, sched, data = parts.model, parts.optimizer, parts.scheduler, parts.data
    start = _resume(out, parts)
    log = MetricLog(out / METRICS, resume_step=start) if dist.is_main else None
    kept_alignment = truncate_from(out / ALIGNMENT, start) if dist.is_main else []
    monitor = config.monitor.build(model, path=out / ALIGNMENT, roles=parts.roles)
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
        sched.step()
        loss_value = dist.mean(loss.detach().float()).item()
        steps_done += 1
        if log:
            log.write({"step": step, "train_loss": loss_value})
        bar.update(step, loss_value)
        if not math.isfinite(loss_value) or loss_value > cfg.max_loss:
            diverged_at = step
            break
        last = step + 1 == cfg.steps
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and not last and log:
            log.write({"step": step, "val_loss": evaluate(parts, device, cfg.batch_size)})
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and not last and dist.is_main:
            checkpoint.save(out, step=step + 1, model=parts.raw_model, optimizer=opt, scheduler=sched)
    bar.close()
    wall = time.perf_counter() - t0
    if not dist.is_main:
        return RunRecords({})
    val = evaluate(parts, device, cfg.batch_size) if diverged_at is None else float("nan")
    # Validation rows carry the 0-based step after which they were measured, like the train rows.
    log.write({"step": cfg.steps - 1 if diverged_at is None else diverged_at, "val_loss": val})
    log.close()
    summary = _summary(config, parts, log.rows, val, diverged_at, wall, steps_done, out)
    return RunRecords(summary, log.rows, kept_alignment + monitor.records)


@torch.no_grad()
def evaluate(parts: Parts, device: torch.device, batch_size: int) -> float:
    """Mean validation loss over the dataset's fixed validation batches (rank 0, unwrapped model)."""
    model = parts.raw_model
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in parts.data.val_batches(batch_size):
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


def _autocast(config: RunConfig, device: torch.device):
    if config.run.bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _summary(config: RunConfig, parts: Parts, rows: list[dict], val: float, diverged_at: int | None,
             wall: float, steps_done: int, out: Path) -> dict[str, Any]:
    losses = [float(r["train_loss"]) for r in rows if "train_loss" in r]
    window = losses[-config.run.final_window:]
    lm = parts.data.task == "lm"
    items = config.run.batch_size * (config.data.seq_len if lm else 1)
    return {
        "status": DIVERGED if diverged_at is not None else DONE,
        "steps": len(losses),
        "final_train_loss": sum(window) / len(window) if window and diverged_at is None else float("nan"),
        "val_loss": val,
        "diverged_at": diverged_at,
        "wall_s": wall,
        "items_per_s": items * steps_done / wall if wall > 0 else float("nan"),
        "items": "tokens" if lm else "samples",
        "width": config.model.width,
        "width_mult": config.model.width_mult,
        "n_params": sum(p.numel() for p in parts.raw_model.parameters()),
        "folder": str(out),
    }


def preflight(config: RunConfig, out: str | Path, *, force: bool = False) -> None:
    """Check everything a run can be refused for before anything is written or recorded, so a bad
    input leaves no folder and no `failed` store row behind: `ConfigError`, one line naming the
    field or file. Checks the `out` folder (not a file; unless `force`, not a run of another config
    or of an edited corpus), the device, `monitor.layers` against the model (built on the meta
    device: no memory, no RNG draws), and the data (its fingerprint, then the dataset built once)."""
    out = Path(out)
    if (taken := next((p for p in (out, *out.parents) if p.exists()), None)) is not None and not taken.is_dir():
        raise ConfigError(f"out: {taken} is a file, not a folder")
    if not force:
        _check_same_config(out, config)
    if config.run.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device: cuda is not available on this machine (run.device=cpu or auto)")
    with torch.device("meta"):
        model = config.model.build()
    _field_errors("monitor", config.monitor.build, model)
    if isinstance(config.data, TextDataConfig):
        config.data.check_unchanged()
    _field_errors("data", config.data.build)


def _field_errors(section: str, make, *args) -> None:
    """`make(*args)`, with an error whose message starts with a field name (``layers: …``) raised as
    a `ConfigError` of `section` (``monitor.layers: …``); any other error is a bug and stays as it is."""
    try:
        make(*args)
    except (ValueError, FileNotFoundError) as err:
        if isinstance(err, ConfigError) or not re.match(r"[\w.\[\]]+: ", str(err)):
            raise
        raise ConfigError(f"{section}.{err}") from None


def _check_same_config(out: Path, config: RunConfig) -> None:
    """`out` holds no run, or a run of this very config (resumed or already finished)."""
    path = out / CONFIG
    if not path.is_file() or path.read_text() == dump_yaml(config):
        return
    try:
        old = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        old = None
    new = config.to_dict()
    if isinstance(old, dict) and isinstance(old.get("data"), dict) and _but_fingerprint(old) == _but_fingerprint(new):
        raise ConfigError(f"data: the corpus changed since the run in {out} was made (fingerprint "
                          f"{old['data'].get('fingerprint')} then, {new['data'].get('fingerprint')} now); "
                          "use another --out, or --force to re-run it on the corpus as it is")
    raise ConfigError(f"out: {out} holds a run of a different config; choose another folder, or --force to "
                      "replace it")


def _but_fingerprint(config: dict) -> dict:
    return {**config, "data": {k: v for k, v in config["data"].items() if k != "fingerprint"}}
