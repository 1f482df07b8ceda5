"""The run store: one SQLite file (WAL) indexing every run of a study, safe for concurrent writers.

Tables (schema 1): ``runs`` (one row per config hash: config, status, sweep, tags, summary JSON plus
typed summary columns, timings), ``series`` (run_id, name, step → value) and ``alignment`` (long:
run_id, step, layer, metric → value, role, fan_in, fan_out; one row per layer on read). Their
primary keys and INSERT OR REPLACE make re-logging after a resume idempotent. One connection per
process and thread, opened lazily; writes are BEGIN IMMEDIATE transactions with a 60 s busy timeout
and retried while SQLite answers busy, so concurrent writers queue instead of failing. NaN is SQL
NULL, read back as NaN; JSON columns hold non-finite floats as "nan"/"inf"/"-inf" (as run folders do).
A file SQLite cannot read (not a database, damaged) or a path that is a folder raises `StoreError`,
one line naming the file, from whichever call first meets it; a full disk raises an ENOSPC `OSError`
naming it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import random
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd

from lrtransfer.config import config_hash
from lrtransfer.monitor import COLUMNS as _ALIGN_COLUMNS
from lrtransfer.monitor import METRICS, NORMS
from lrtransfer.records.jsonl import dumps, loads

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
Status = Literal["running", "done", "diverged", "failed"]  # a run's status: the one definition
RUNNING, DONE, DIVERGED, FAILED = get_args(Status)
STATUSES = (DONE, DIVERGED, FAILED)  # how a run can end
FINISHED = (DONE, DIVERGED)  # ended with a result: never re-run (unless forced)
PENDING = "pending"  # a planned run the store has no row for yet (sweep results tables)
SKIPPED = "skipped"  # a run asked for again after it finished: nothing trained (a summary key, an outcome)
SUMMARY_COLUMNS = {"final_train_loss": "REAL", "val_loss": "REAL", "diverged_at": "INTEGER", "steps": "INTEGER"}
_TYPED = {**SUMMARY_COLUMNS, "wall_s": "REAL"}  # typed copies of summary values, for SQL filters
SERIES_COLUMNS = ("step", "name", "value")
ALIGN_KEYS = _ALIGN_COLUMNS[:5]  # step, layer, role, fan_in, fan_out: the monitor's record keys
ALIGN_METRICS = (*METRICS, *NORMS)  # the monitor's metric columns
# (file, pid, thread) → connection. A forked child never touches its parent's connections: closing
# one could release the parent's POSIX locks (SQLite FAQ 6). Thread idents are reused only after exit.
_CONNECTIONS: dict[tuple[Path, int, int, bool], sqlite3.Connection] = {}  # (…, readonly)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, config_hash TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ({', '.join(map(repr, get_args(Status)))})),
    sweep TEXT, tags TEXT NOT NULL DEFAULT '{{}}', summary TEXT, {", ".join(map(" ".join, SUMMARY_COLUMNS.items()))},
    created_at REAL NOT NULL, started_at REAL NOT NULL, finished_at REAL, wall_s REAL, attempts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs (sweep, status);
CREATE TABLE IF NOT EXISTS series (run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE,
    name TEXT NOT NULL, step INTEGER NOT NULL, value REAL, PRIMARY KEY (run_id, name, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alignment (run_id INTEGER NOT NULL REFERENCES runs ON DELETE CASCADE,
    step INTEGER NOT NULL, layer TEXT NOT NULL, metric TEXT NOT NULL, value REAL, role TEXT NOT NULL,
    fan_in INTEGER NOT NULL, fan_out INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (run_id, step, layer, metric)) WITHOUT ROWID;
"""


class StoreError(ValueError):
    """The store file cannot be used: not an SQLite database, damaged, a folder, or cannot be opened."""


def _readable(method):
    """Turn SQLite's "not a database" / "malformed" / "cannot open" errors into one `StoreError` line."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as err:
            cause = err if isinstance(err, sqlite3.DatabaseError) else err.__cause__  # pandas wraps SQLite's
            code = getattr(cause, "sqlite_errorcode", 0) & 0xFF
            if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _disk_full(self.path)):
                raise OSError(errno.ENOSPC, "No space left on device", str(self.path)) from None
            if code not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CANTOPEN):
                raise
            raise StoreError(f"store: {self.path} is not a readable run store ({cause}); "
                             "move it away, or use another store file") from None
    return wrapper


class RunAlreadyDone(RuntimeError):
    """`start_run` of a config whose run is already done or diverged (pass ``force=True``)."""

    def __init__(self, run_id: int, config_hash: str, status: str) -> None:
        super().__init__(f"config: run {run_id} (hash {config_hash}) is already {status}; pass force=True to re-run")
        self.run_id, self.config_hash, self.status = run_id, config_hash, status


def open(path: str | Path, readonly: bool = False) -> RunStore:
    """Open the run store at `path`, creating the file and schema if needed; `readonly`: for readers
    (`status`, `report`), which write nothing, and see a missing file as an empty store."""
    return RunStore(path, readonly)


class RunStore:
    """Runs, step series and alignment records of a study, in one SQLite file (see the module doc)."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        if str(path) == ":memory:":
            raise ValueError("path: an in-memory database cannot be shared between connections")
        self.path = Path(path).resolve()  # the only state: a store pickles into spawned workers
        self.readonly = readonly
        if self.path.is_dir():
            raise StoreError(f"store: {self.path} is a folder; pass a file such as {self.path / 'runs.db'}")
        if readonly:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"store: cannot create the folder {self.path.parent} ({err.strerror})") from None
        self._create_schema()

    @_readable
    def start_run(self, config: Mapping[str, Any], sweep: str | None = None,
                  tags: Mapping[str, Any] | None = None, force: bool = False) -> int:
        """Insert a ``running`` run for `config` and return its run_id. A not-finished run of the same
        hash (killed, failed) resumes into its row, series kept; given `sweep`/`tags` replace the old.
        A done/diverged one raises `RunAlreadyDone`, or with `force` is reset and its records deleted."""
        h, now, tags_json = config_hash(config), time.time(), None if tags is None else dumps(tags, "tags")
        with self._write() as db:
            row = db.execute("SELECT run_id, status FROM runs WHERE config_hash = ?", (h,)).fetchone()
            if row is None:
                return db.execute("INSERT INTO runs (config_hash, config, status, sweep, tags, created_at, started_at,"
                                  " attempts) VALUES (?, ?, 'running', ?, ?, ?, ?, 1)",
                                  (h, dumps(config, "config"), sweep, tags_json or "{}", now, now)).lastrowid
            run_id, status = row
            if status in FINISHED and not force:
                raise RunAlreadyDone(run_id, h, status)
            if status in FINISHED:
                db.execute("DELETE FROM series WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM alignment WHERE run_id = ?", (run_id,))
            cleared = " = NULL, ".join(("summary", "finished_at", *_TYPED))
            db.execute(f"UPDATE runs SET status = 'running', {cleared} = NULL, started_at = ?, attempts = attempts + 1,"
                       " sweep = COALESCE(?, sweep), tags = COALESCE(?, tags) WHERE run_id = ?",
                       (now, sweep, tags_json, run_id))
            return run_id

    @_readable
    def log_series(self, run_id: int, rows: Iterable[tuple[int, str, float]] | pd.DataFrame) -> None:
        """Record (step, name, value) rows, or a tidy DataFrame, in one transaction; re-logging replaces."""
        if isinstance(rows, pd.DataFrame):
            rows = _columns(rows, SERIES_COLUMNS, "rows")[list(SERIES_COLUMNS)].itertuples(index=False, name=None)
        data = [(run_id, str(n), _num(s, "rows: step", int), _num(v, "rows: value")) for s, n, v in rows]
        with self._write(run_id) as db:
            db.executemany("INSERT OR REPLACE INTO series (run_id, name, step, value) VALUES (?, ?, ?, ?)", data)

    @_readable
    def log_alignment(self, run_id: int, frame: pd.DataFrame | Iterable[Mapping[str, Any]]) -> None:
        """Record alignment records (a DataFrame or dicts): every column but the `ALIGN_KEYS` is a metric."""
        records = _columns(frame, ALIGN_KEYS, "frame").to_dict("records") if isinstance(frame, pd.DataFrame) else frame
        data = []
        for seq, rec in enumerate(records):  # seq keeps the logged layer order within a step
            if missing := [k for k in ALIGN_KEYS if k not in rec]:
                raise ValueError(f"frame: record {seq} lacks {missing}")
            key = (run_id, _num(rec["step"], "frame: step", int), str(rec["layer"]), str(rec["role"]),
                   _num(rec["fan_in"], "frame: fan_in", int), _num(rec["fan_out"], "frame: fan_out", int), seq)
            data += [(*key, m, _num(v, f"frame: {m}")) for m, v in rec.items() if m not in (*ALIGN_KEYS, "run_id")]
        with self._write(run_id) as db:
            db.executemany("INSERT OR REPLACE INTO alignment (run_id, step, layer, role, fan_in, fan_out, seq, metric,"
                           " value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", data)

    @_readable
    def finish(self, run_id: int, status: str, summary: Mapping[str, Any]) -> None:
        """Mark a run done|diverged|failed with its summary; ``wall_s`` is the summary's, else start → now."""
        if status not in STATUSES:
            raise ValueError(f"status: {status!r} is not one of {'|'.join(STATUSES)}")
        text = dumps(summary, "summary")
        if summary.get("status", status) != status:
            raise ValueError(f"summary: its status {summary['status']!r} disagrees with status {status!r}")
        typed, sets = _typed(summary), " = ?, ".join(SUMMARY_COLUMNS)
        with self._write(run_id) as db:
            db.execute(f"UPDATE runs SET status = ?, summary = ?, finished_at = ?, {sets} = ?, "
                       "wall_s = COALESCE(?, ? - started_at) WHERE run_id = ?",
                       (status, text, now := time.time(), *typed, now, run_id))

    @_readable
    def find(self, config_hash: str) -> dict[str, Any] | None:
        """The run with this config hash as a dict (config, tags and summary decoded), or None."""
        cur = self._connection().execute("SELECT * FROM runs WHERE config_hash = ?", (config_hash,))
        row = dict(zip([d[0] for d in cur.description], values)) if (values := cur.fetchone()) else None
        return row and {**row, **{k: loads(row[k]) for k in ("config", "tags", "summary")}}

    def is_finished(self, config_hash: str) -> bool:
        """Whether the run with this config hash is done or diverged."""
        return (self.find(config_hash) or {}).get("status") in FINISHED

    @_readable
    def runs(self, sweep: str | None = None, config_columns: bool = False) -> pd.DataFrame:
        """One row per run (of `sweep` if given): run_id, config_hash, status, sweep, ``tag.*``, summary
        values (typed columns first), timings (UTC), wall_s, attempts, config JSON (or ``config.*``)."""
        where, params = (" WHERE sweep = ?", (sweep,)) if sweep is not None else ("", ())
        df = self._query(f"SELECT * FROM runs{where} ORDER BY run_id", params)
        df = df.astype({"run_id": "int64", "attempts": "int64", "config_hash": "str", "status": "str",
                        **{k: "float64" if t == "REAL" else "Int64" for k, t in _TYPED.items()}})
        for col in ("created_at", "started_at", "finished_at"):
            df[col] = pd.to_datetime(df[col].astype("float64"), unit="s", utc=True)
        config = _flat(df.config, "config.", ()) if config_columns else df[["config"]]
        return pd.concat([df[["run_id", "config_hash", "status", "sweep"]], _flat(df.tags, "tag.", ()),
                          df[list(SUMMARY_COLUMNS)], _flat(df.summary, "", (*df.columns, "status")),
                          df[["created_at", "started_at", "finished_at", "wall_s", "attempts"]], config], axis=1)

    @_readable
    def config(self, run_id: int) -> dict[str, Any]:
        """The config a run was started with."""
        sql = "SELECT config FROM runs WHERE run_id = ?"
        return loads(self._connection().execute(sql, (self._check_run(run_id),)).fetchone()[0])

    @_readable
    def series(self, run_id: int, names: str | Iterable[str] | None = None, wide: bool = False) -> pd.DataFrame:
        """Tidy (step, name, value) rows of a run, only `names` if given; `wide` pivots to step × name."""
        names = [names] if isinstance(names, str) else None if names is None else list(names)
        only = "" if names is None else f" AND name IN ({', '.join('?' * len(names))})"
        df = self._query(f"SELECT step, name, value FROM series WHERE run_id = ?{only} ORDER BY step, name",
                         (self._check_run(run_id), *(names or ())))
        df = df.astype({"step": "int64", "name": "str", "value": "float64"})
        if missing := sorted(set(names or ()) - set(df["name"])):
            raise KeyError(f"names: run {run_id} has no series {missing}")
        if not wide:
            return df
        out = df.pivot(index="step", columns="name", values="value")
        return out.reindex(columns=names or sorted(out.columns)).rename_axis(columns=None).reset_index()

    @_readable
    def alignment(self, run_id: int) -> pd.DataFrame:
        """A run's alignment records, one row per (step, layer) in logged order: the `ALIGN_KEYS`, the
        `ALIGN_METRICS` (NaN where not logged), then any other metrics by name."""
        df = self._query("SELECT step, seq, layer, role, fan_in, fan_out, metric, value FROM alignment "
                         "WHERE run_id = ? ORDER BY step, seq", (self._check_run(run_id),))
        wide = df.pivot(index=["step", "seq", *ALIGN_KEYS[1:]], columns="metric", values="value")
        metrics = [*ALIGN_METRICS, *sorted(set(wide.columns) - set(ALIGN_METRICS))]
        out = wide.reindex(columns=metrics).astype("float64").rename_axis(columns=None).reset_index()
        return out.drop(columns="seq").astype({"step": "int64", "layer": "str", "role": "str",
                                               "fan_in": "int64", "fan_out": "int64"})

    def close(self) -> None:
        """Close this thread's connection (a later call opens a new one)."""
        if conn := _CONNECTIONS.pop((self.path, os.getpid(), threading.get_ident(), self.readonly), None):
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        key = (self.path, os.getpid(), threading.get_ident(), self.readonly)
        if key not in _CONNECTIONS and self.readonly:
            _CONNECTIONS[key] = self._reader()
        if key not in _CONNECTIONS:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            if _retry(conn.execute, "PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                raise RuntimeError(f"path: {self.path} cannot use WAL mode (a network file system?)")
            conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: a killed process loses nothing committed
            conn.execute("PRAGMA foreign_keys = ON")
            _CONNECTIONS[key] = conn
        return _CONNECTIONS[key]

    def _reader(self) -> sqlite3.Connection:
        """A read-only connection; to an empty in-memory store where the file does not exist."""
        if not self.path.exists():
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            for statement in _SCHEMA.split(";")[:-1]:
                conn.execute(statement)
            return conn
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)

    @contextlib.contextmanager
    def _write(self, run_id: int | None = None):
        """A BEGIN IMMEDIATE transaction (of an existing `run_id`, if given), committed unless it raises."""
        db = self._connection()
        _retry(db.execute, "BEGIN IMMEDIATE")
        try:
            if run_id is not None:
                self._check_run(run_id)
            yield db
            _retry(db.execute, "COMMIT")
        except BaseException:
            if db.in_transaction:  # never leave a failed transaction open on a reused connection
                db.execute("ROLLBACK")
            raise

    def _query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        return pd.read_sql_query(sql, self._connection(), params=params)

    def _check_run(self, run_id: int) -> int:
        run_id = _num(run_id, "run_id", int)
        if self._connection().execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise KeyError(f"run_id: no run {run_id} in {self.path}")
        return run_id

    @_readable
    def _create_schema(self) -> None:
        with self._write() as db:
            for statement in _SCHEMA.split(";")[:-1]:  # not executescript: it would COMMIT first
                db.execute(statement)
            (version,) = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            if version is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise RuntimeError(f"path: {self.path} has store schema {version}, newer than {SCHEMA_VERSION}")


def _flat(texts: pd.Series, prefix: str, skip: Iterable[str]) -> pd.DataFrame:
    """JSON dicts (one per run) as columns ``prefix + dotted key``, leaving out the keys in `skip`."""
    df = pd.json_normalize([loads(t) or {} for t in texts]).set_axis(texts.index)
    return df.drop(columns=[c for c in df.columns if c in set(skip)]).add_prefix(prefix)


def _columns(df: pd.DataFrame, columns: tuple[str, ...], where: str) -> pd.DataFrame:
    if missing := [c for c in columns if c not in df.columns]:
        raise ValueError(f"{where}: DataFrame lacks columns {missing} (has {list(df.columns)})")
    return df


def _num(v: Any, where: str, kind: type = float) -> Any:
    """`v` as a float (None → NaN; "nan"/"inf" strings parse) or as an int (integral values only)."""
    with contextlib.suppress(TypeError, ValueError):
        if kind is float:
            return math.nan if v is None else float(v)
        if not isinstance(v, (bool, str)) and float(v).is_integer():
            return int(v)
    raise ValueError(f"{where}: expected {'an integer' if kind is int else 'a number'}, got {v!r}")


def _typed(summary: Mapping[str, Any]) -> list[int | float | None]:
    """The summary's values for the `_TYPED` columns, type-checked; None and NaN become NULL."""
    kinds = {"REAL": float, "INTEGER": int}
    return [None if (v := summary.get(k)) is None or v != v else _num(v, f"summary: {k}", kinds[t])
            for k, t in _TYPED.items()]


def _disk_full(path: Path) -> bool:
    """Whether the file system of `path` has no room left (SQLite reports a failed write to its
    shared-memory file as a generic I/O error)."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def _retry(fn, *args):
    """Call `fn` again while SQLite refuses it as busy/locked without waiting, up to the busy timeout."""
    deadline, delay = time.monotonic() + BUSY_TIMEOUT_S, 0.005
    while True:
        try:
            return fn(*args)
        except sqlite3.OperationalError as err:
            code = getattr(err, "sqlite_errorcode", 0) & 0xFF
            if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(2 * delay, 0.25)
