"""The run store: round trips, config hashing, resume/idempotence, validation, concurrent writers."""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import pickle
import re
import sqlite3

import numpy as np
import pandas as pd
import pytest

from lrtransfer.records import store

CONFIG = {"model": {"name": "mlp", "width": 64, "depth": 3}, "optim": {"lr": 0.008, "betas": [0.9, 0.95]}}


@pytest.fixture
def db(tmp_path):
    run_store = store.open(tmp_path / "runs.db")
    yield run_store
    run_store.close()


def _align(steps=(0, 10), layers=("layers.0", "layers.1", "head")) -> pd.DataFrame:
    rows = [{"step": s, "layer": name, "role": "hidden" if name != "head" else "output", "fan_in": 64, "fan_out": 32,
             **{m: float(i + s) for i, m in enumerate(store.ALIGN_METRICS)}}
            for s in steps for name in layers]
    return pd.DataFrame(rows)


# --- config_hash -------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, same", [
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),                                      # key order
    ({"m": {"x": 1, "y": [1, 2]}}, {"m": {"y": [1, 2], "x": 1}}, True),               # nested key order
    ({"lr": 1}, {"lr": 1.0}, True),                                                  # integral float ≡ int
    ({"betas": (0.9, 0.95)}, {"betas": [0.9, 0.95]}, True),                          # tuple ≡ list
    ({"lr": np.float64(0.008), "w": np.int64(64)}, {"lr": 0.008, "w": 64}, True),    # numpy ≡ Python
    ({"lr": 0.008}, {"lr": 0.0080000001}, False),                                    # a changed value
    ({"m": {"x": 1}}, {"m": {"x": 2}}, False),                                       # a changed nested value
    ({"flag": True}, {"flag": 1}, False),                                            # bool ≢ int
    ({"w": 1}, {"w": "1"}, False),                                                   # str ≢ int
    ({"a": 1}, {"a": 1, "b": None}, False),                                          # an extra key
    ({"lr": 1.5}, {"lr": 1}, False),
])
def test_config_hash_stability_and_sensitivity(a, b, same):
    assert (store.config_hash(a) == store.config_hash(b)) is same


def test_config_hash_is_pinned():
    # The canonical form must never change: stored hashes would stop matching their configs.
    assert store.config_hash({"b": [1, 2.5], "a": {"lr": 0.008}}) == "b3daffad35c2b41a"
    assert re.fullmatch(r"[0-9a-f]{16}", store.config_hash(CONFIG))  # 16 lower-case hex digits


def test_config_hash_rejects_what_is_not_json():
    with pytest.raises(TypeError, match="config.model: set"):
        store.config_hash({"model": {1, 2}})
    with pytest.raises(TypeError, match="config: expected a dict"):
        store.config_hash([1, 2])


# --- round trip ----------------------------------------------------------------------------------

def test_round_trip_config_summary_series_alignment(db):
    run_id = db.start_run(CONFIG, sweep="lr-sweep", tags={"rule": "independent", "width": 64, "lr": 0.008})
    series = pd.DataFrame({"step": [0, 0, 1, 1], "name": ["train_loss", "lr/hidden"] * 2,
                           "value": [2.5, 1e-3, 2.25, float("nan")]})
    db.log_series(run_id, series)
    frame = _align().assign(my_metric=3.0)
    db.log_alignment(run_id, frame)
    summary = {"status": "done", "final_train_loss": 2.25, "val_loss": float("nan"), "diverged_at": None,
               "steps": 2, "wall_s": 1.5, "width": 64, "items": "tokens"}
    db.finish(run_id, "done", summary)

    assert db.config(run_id) == CONFIG
    pd.testing.assert_frame_equal(db.series(run_id), series.sort_values(["step", "name"], ignore_index=True))
    assert db.series(run_id, wide=True).columns.tolist() == ["step", "lr/hidden", "train_loss"]
    assert db.series(run_id, names="train_loss")["value"].tolist() == [2.5, 2.25]
    pd.testing.assert_frame_equal(db.alignment(run_id), frame)  # logged order, extra metric kept
    row = db.runs().iloc[0]
    assert (row.run_id, row.status, row.sweep, row["tag.rule"], row["tag.width"]) == (
        run_id, "done", "lr-sweep", "independent", 64)
    assert (row.final_train_loss, row.steps, row.wall_s, row["items"]) == (2.25, 2, 1.5, "tokens")
    assert math.isnan(row.val_loss) and pd.isna(row.diverged_at)
    assert row.finished_at >= row.started_at == row.created_at
    found = db.find(store.config_hash(CONFIG))
    assert math.isnan(found["summary"]["val_loss"])  # NaN survives the JSON column (stored as "nan")
    assert found["config"] == CONFIG and found["tags"]["rule"] == "independent"


def test_runs_columns_and_sweep_filter(db):
    for width in (64, 128):
        db.start_run({**CONFIG, "width": width}, sweep="a", tags={"width": width})
    db.start_run({"other": 1}, sweep="b")
    runs = db.runs(sweep="a")
    assert runs["tag.width"].tolist() == [64, 128] and set(runs.status) == {"running"}
    assert runs.columns[:5].tolist() == ["run_id", "config_hash", "status", "sweep", "tag.width"]
    assert len(db.runs()) == 3 and db.runs(sweep="none").empty
    assert "config.optim.lr" in db.runs(config_columns=True).columns


def test_alignment_accepts_json_lines_dicts(db):
    # The training loop passes raw alignment.jsonl records, where NaN/inf are strings.
    run_id = db.start_run(CONFIG)
    db.log_alignment(run_id, [{"step": 0, "layer": "l", "role": "hidden", "fan_in": 4, "fan_out": 2,
                               "update_alignment": "nan", "relative_update": "inf", "weight_norm": 1.0}])
    row = db.alignment(run_id).iloc[0]
    assert math.isnan(row.update_alignment) and row.relative_update == math.inf and row.weight_norm == 1.0
    assert math.isnan(row.weight_alignment)  # a known metric never logged


# --- resume, idempotence, finished runs -----------------------------------------------------------

def test_relogging_is_idempotent(db):
    run_id = db.start_run(CONFIG)
    db.log_series(run_id, [(s, "train_loss", 1.0) for s in range(10)])
    db.log_series(run_id, [(s, "train_loss", 2.0) for s in range(5, 15)])  # resumed from step 5
    db.log_alignment(run_id, _align())
    db.log_alignment(run_id, _align(steps=(10,)).assign(weight_norm=9.0))
    series = db.series(run_id)
    assert series.step.tolist() == list(range(15)) and series.value.tolist() == [1.0] * 5 + [2.0] * 10
    align = db.alignment(run_id)
    assert len(align) == 6 and align.groupby("step").weight_norm.max().to_dict() == {0: 5.0, 10: 9.0}


def test_killed_run_resumes_into_its_row(db):
    run_id = db.start_run(CONFIG, sweep="s", tags={"phase": 1})
    db.log_series(run_id, [(0, "train_loss", 1.0)])
    assert db.start_run(CONFIG, tags={"phase": 2}) == run_id  # killed → started again
    row = db.find(store.config_hash(CONFIG))
    assert (row["status"], row["attempts"], row["sweep"], row["tags"]) == ("running", 2, "s", {"phase": 2})
    assert len(db.series(run_id)) == 1
    db.finish(run_id, "failed", {"error": "OOM"})
    assert db.start_run(CONFIG) == run_id and not db.is_finished(store.config_hash(CONFIG))


@pytest.mark.parametrize("status", ["done", "diverged"])
def test_finished_run_is_not_rerun_unless_forced(db, status):
    run_id = db.start_run(CONFIG)
    db.log_series(run_id, [(0, "train_loss", 1.0)])
    db.log_alignment(run_id, _align())
    db.finish(run_id, status, {"steps": 1})
    assert db.is_finished(store.config_hash(CONFIG))
    with pytest.raises(store.RunAlreadyDone, match=f"already {status}.*force=True"):
        db.start_run(CONFIG)
    assert db.start_run(CONFIG, force=True) == run_id
    row = db.runs().iloc[0]
    assert (row.status, row.attempts, len(db.runs())) == ("running", 2, 1) and pd.isna(row.steps)
    assert db.series(run_id).empty and db.alignment(run_id).empty


# --- validation: errors name the argument ---------------------------------------------------------

@pytest.mark.parametrize("call, error, match", [
    (lambda db, r: db.finish(r, "ok", {}), ValueError, "status: 'ok' is not one of done|diverged|failed"),
    (lambda db, r: db.finish(r, "running", {}), ValueError, "status:"),
    (lambda db, r: db.finish(r, "done", {"status": "failed"}), ValueError, "summary: its status"),
    (lambda db, r: db.finish(r, "done", [1]), TypeError, "summary: expected a dict"),
    (lambda db, r: db.finish(r, "done", {"steps": 1.5}), ValueError, "summary: steps"),
    (lambda db, r: db.log_series(r + 1, [(0, "x", 1.0)]), KeyError, "run_id: no run"),
    (lambda db, r: db.log_series(r, [(0.5, "x", 1.0)]), ValueError, "rows: step"),
    (lambda db, r: db.log_series(r, [(0, "x", "high")]), ValueError, "rows: value"),
    (lambda db, r: db.log_series(r, pd.DataFrame({"step": [0]})), ValueError, "rows: DataFrame lacks"),
    (lambda db, r: db.log_alignment(r, [{"step": 0, "layer": "l"}]), ValueError, "frame: record 0 lacks"),
    (lambda db, r: db.log_alignment(r, _align().assign(fan_in=1.5)), ValueError, "frame: fan_in"),
    (lambda db, r: db.series(r, names=["trian_loss"]), KeyError, "names: run .* has no series"),
    (lambda db, r: db.alignment(r + 7), KeyError, "run_id: no run"),
    (lambda db, r: db.start_run(CONFIG | {"x": 1}, tags=["a"]), TypeError, "tags: expected a dict"),
])
def test_errors_name_the_argument(db, call, error, match):
    run_id = db.start_run(CONFIG)
    with pytest.raises(error, match=match):
        call(db, run_id)
    assert db.runs().status.tolist() == ["running"]  # nothing half-written


def test_wal_mode_and_schema_version(db):
    with contextlib.closing(sqlite3.connect(db.path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(store.SCHEMA_VERSION,)]
    assert store.open(db.path).runs().empty  # re-opening an existing store is harmless
    with pytest.raises(ValueError, match="path: an in-memory"):
        store.open(":memory:")


# --- concurrent writers ---------------------------------------------------------------------------

WORKERS, RUNS, ROWS, BATCH = 4, 2, 1500, 10


def _writer(db: store.RunStore, worker: int, barrier) -> None:
    """One process: start runs and log ROWS series rows per run in small transactions."""
    barrier.wait()
    shared = db.start_run({"shared": True})  # every worker races to create the same run
    for r in range(RUNS):
        run_id = db.start_run({"worker": worker, "run": r}, sweep="concurrent", tags={"worker": worker})
        for lo in range(0, ROWS, BATCH):
            db.log_series(run_id, [(s, "train_loss", worker + s / ROWS) for s in range(lo, lo + BATCH)])
            db.log_series(shared, [(worker * ROWS + lo, "x", float(r))] * 2)  # a duplicate in one batch
        db.finish(run_id, "done", {"steps": ROWS})


def test_concurrent_writers_lose_nothing(db):
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WORKERS, timeout=60)
    procs = [ctx.Process(target=_writer, args=(db, w, barrier)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        p.kill()  # only a hung worker is still there to kill; its exit code then fails the test
    assert [p.exitcode for p in procs] == [0] * WORKERS
    runs = db.runs(sweep="concurrent")
    assert len(runs) == WORKERS * RUNS and set(runs.status) == {"done"} and (runs.steps == ROWS).all()
    for run_id, worker in runs[["run_id", "tag.worker"]].itertuples(index=False):
        np.testing.assert_allclose(db.series(run_id)["value"], worker + np.arange(ROWS) / ROWS)
    shared = db.runs().query("sweep.isna()").run_id.tolist()
    assert len(shared) == 1 and len(db.series(shared[0])) == WORKERS * ROWS // BATCH
    with contextlib.closing(sqlite3.connect(db.path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        total = conn.execute("SELECT COUNT(*) FROM series").fetchone()[0]
    assert total == WORKERS * RUNS * ROWS + WORKERS * ROWS // BATCH


def test_store_pickles_without_its_connection(db):
    run_id = db.start_run(CONFIG)
    clone = pickle.loads(pickle.dumps(db))
    clone.log_series(run_id, [(0, "x", 1.0)])
    assert db.series(run_id).value.tolist() == [1.0]


# --- a damaged store: one line naming the file ------------------------------------------------------

def _filled_store(path) -> bytes:
    db = store.open(path)
    for i in range(50):
        db.log_series(db.start_run({"i": i}), [(s, "train_loss", 1.0) for s in range(200)])
    db.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:  # fold the WAL into the file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.read_bytes()


def _flip(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 64]) + data[mid + 64:]


@pytest.mark.parametrize("damage, reason", [
    (lambda data: np.random.default_rng(0).bytes(len(data)), "file is not a database"),
    (lambda data: data[: len(data) // 2], "database disk image is malformed"),
    (lambda data: data[:50], "database disk image is malformed"),
    (lambda data: b"SQLite format 3\0" + b"\0" * 100, "file is not a database"),
    (_flip, "database disk image is malformed"),
], ids=["garbage", "truncated", "header-only", "zeroed", "flipped"])
def test_a_damaged_store_raises_one_line_naming_the_file(tmp_path, damage, reason):
    path = tmp_path / "runs.db"
    path.write_bytes(damage(_filled_store(path)))
    for name in ("runs.db-wal", "runs.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(store.StoreError) as err:
        db = store.open(path)  # a flipped page may only show when it is read
        for run_id in db.runs().run_id:
            db.series(run_id)
    message = str(err.value)
    assert message == f"store: {path} is not a readable run store ({reason}); move it away, or use another store file"
    assert "\n" not in message and isinstance(err.value, ValueError)


def test_a_store_path_that_is_a_folder_or_under_a_file(tmp_path):
    with pytest.raises(store.StoreError, match=f"^store: {tmp_path} is a folder; pass a file such as "):
        store.open(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(store.StoreError, match=f"^store: cannot create the folder {tmp_path / 'file'} "):
        store.open(tmp_path / "file" / "runs.db")


def test_summary_json_in_the_store_is_strict(db):
    run_id = db.start_run(CONFIG)
    db.finish(run_id, "diverged", {"val_loss": math.nan, "final_train_loss": math.inf, "hist": [-math.inf, 1.0]})
    with contextlib.closing(sqlite3.connect(db.path)) as conn:
        text = conn.execute("SELECT summary FROM runs").fetchone()[0]

    def refuse(token):
        raise AssertionError(f"bare {token}")
    assert json.loads(text, parse_constant=refuse) == {"val_loss": "nan", "final_train_loss": "inf",
                                                       "hist": ["-inf", 1.0]}
