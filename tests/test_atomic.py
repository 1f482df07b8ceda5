"""Atomic writes and strict JSON: a failed write leaves the old file, a half-written file reads as "not
finished", JSON-lines readers skip damaged lines and go on (a real full disk: tests/test_faults.py)."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess

import pytest

from lrtransfer.records import atomic, jsonl


def _strict_loads(text: str):
    def refuse(token):
        raise AssertionError(f"bare {token} in JSON")
    return json.loads(text, parse_constant=refuse)


# --- writes ----------------------------------------------------------------------------------------

def test_writes_replace_the_file_and_leave_no_temp(tmp_path):
    path = tmp_path / "f.bin"
    atomic.write_bytes(path, b"old")
    atomic.write_bytes(path, b"new")
    atomic.write_text(tmp_path / "t.txt", "héllo")
    assert path.read_bytes() == b"new" and (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "t.txt"]


def test_json_is_strict_and_reads_back_non_finite_floats(tmp_path):
    summary = {"status": "diverged", "val_loss": math.nan, "nested": {"x": [1.0, math.inf, -math.inf]}, "n": 3}
    atomic.write_json(tmp_path / "summary.json", summary)
    raw = _strict_loads((tmp_path / "summary.json").read_text())
    assert raw["val_loss"] == "nan" and raw["nested"]["x"] == [1.0, "inf", "-inf"]
    back = atomic.read_json(tmp_path / "summary.json")
    assert math.isnan(back["val_loss"]) and back["nested"]["x"] == [1.0, math.inf, -math.inf] and back["n"] == 3
    before = (tmp_path / "summary.json").read_bytes()
    with pytest.raises(TypeError, match=r"summary.json.p: PosixPath is not JSON-serialisable"):
        atomic.write_json(tmp_path / "summary.json", {"p": tmp_path})
    assert (tmp_path / "summary.json").read_bytes() == before  # the failed write changed nothing


@pytest.mark.parametrize("content", [None, b"", b'{"status": "do', b"\x00\xff\xfe garbage", b"not json"],
                         ids=["missing", "empty", "half-written", "binary", "text"])
def test_unfinished_json_reads_as_none(tmp_path, content):
    path = tmp_path / "summary.json"
    if content is not None:
        path.write_bytes(content)
    assert atomic.read_json(path) is None


class _FullDisk:
    """A real file whose writes stop with ENOSPC after `room` bytes, as on a full file system."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data: bytes) -> int:
        n = self.file.write(data[:self.room])
        self.room -= n
        if n < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return n

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_a_write_that_hits_enospc_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    atomic.write_json(path, {"status": "done"})
    monkeypatch.setattr(atomic, "open", lambda p, mode: _FullDisk(open(p, mode), room=5), raising=False)
    with pytest.raises(OSError) as err:
        atomic.write_json(path, {"status": "done", "long": "x" * 100})
    assert err.value.errno == errno.ENOSPC
    assert atomic.read_json(path) == {"status": "done"} and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_copy_links_and_survives_replacing_the_source(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    atomic.write_bytes(src, b"one")
    atomic.copy(src, dst)
    atomic.write_bytes(src, b"two")
    assert dst.read_bytes() == b"one" and src.read_bytes() == b"two"


def test_remove_stale_removes_only_temp_files_of_dead_writers(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    path = tmp_path / "checkpoint.pt"
    stale = path.with_name(f".checkpoint.pt.{dead.pid}.0a1b2c3d.tmp")
    live = path.with_name(f".checkpoint.pt.{os.getppid()}.0a1b2c3d.tmp")  # our parent is running
    other = path.with_name(f".checkpoint.pt.sha256.{dead.pid}.0a1b2c3d.tmp")  # another file's temp
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    assert atomic.remove_stale(path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


# --- JSON lines ------------------------------------------------------------------------------------

def test_jsonl_reader_skips_damaged_lines_and_keeps_reading(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 0, "loss": 1.0}\n{"step": 1, "lo\n\xff\xfe\x00\n[1, 2]\n{"step": 2, "loss": "nan"}\n'
                     b'{"step": 3, "lo')
    assert jsonl.read(path) == [{"step": 0, "loss": 1.0}, {"step": 2, "loss": "nan"}]


def test_jsonl_append_after_a_torn_line_starts_a_new_line(tmp_path):
    path = tmp_path / "alignment.jsonl"
    jsonl.append(path, [{"step": 0}])
    with path.open("a") as f:
        f.write('{"step": 1, "la')  # killed mid-line
    jsonl.append(path, [{"step": 2, "x": math.inf}, {"step": 3, "y": [math.nan]}])
    assert jsonl.read(path) == [{"step": 0}, {"step": 2, "x": "inf"}, {"step": 3, "y": ["nan"]}]
    for line in path.read_text().splitlines()[2:]:
        _strict_loads(line)


def test_copy_onto_its_own_hard_link_leaves_no_temp(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    atomic.write_bytes(src, b"one")
    atomic.copy(src, dst)
    atomic.copy(src, dst)  # rename() of one link onto another of the same file is a no-op
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"] and dst.read_bytes() == b"one"
