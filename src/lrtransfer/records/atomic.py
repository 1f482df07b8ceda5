"""Atomic file writes: a reader, or a re-run after a kill, sees the old file or the new one, never a part.

Every write goes to a temporary file in the target's folder (``.NAME.PID.RANDOM.tmp``), is flushed
and fsynced, renamed over the target with `os.replace` (atomic on POSIX), and then the folder is
fsynced so that the rename itself survives a power cut. On any error — a full disk (ENOSPC)
included — the temporary file is removed and the error re-raised: the old file is left as it was.
A process killed mid-write leaves its temporary file behind; `remove_stale` clears those.

JSON is strict (RFC 8259 has no NaN or Infinity): non-finite floats are written as the strings
"nan"/"inf"/"-inf", as in the run folders' JSON-lines streams and the run store (`lrtransfer.records.jsonl`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lrtransfer.records import jsonl


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace the file at `path` by `data` atomically and durably (see the module doc)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk: say which file could not be written
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror, str(path)) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """`write_bytes` of `text` encoded with `encoding`."""
    return write_bytes(path, text.encode(encoding))


def write_json(path: str | Path, obj: Mapping[str, Any], *, indent: int | None = 2) -> Path:
    """Write the dict `obj` as strict JSON (`jsonl.dumps`: keys sorted, non-finite floats as
    "nan"/"inf"/"-inf" strings) atomically; a value JSON cannot hold raises a TypeError naming it."""
    path = Path(path)
    return write_text(path, jsonl.dumps(obj, path.name, indent=indent) + "\n")


def read_json(path: str | Path) -> Any | None:
    """The JSON value in `path`, with "nan"/"inf"/"-inf" strings read back as floats (`jsonl.loads`);
    None when the file is missing, empty, half-written or not JSON — "not finished", never an exception."""
    try:
        return jsonl.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def copy(src: str | Path, dst: str | Path) -> Path:
    """Make `dst` an atomic copy of `src`: a hard link where the file system has them (no bytes
    copied, and `src` may be replaced later without touching `dst`), else a `write_bytes`."""
    src, dst = Path(src), Path(dst)
    tmp = temp_path(dst)
    try:
        os.link(src, tmp)
    except OSError:  # no hard links here (some network and FUSE file systems)
        return write_bytes(dst, src.read_bytes())
    try:
        os.replace(tmp, dst)
    finally:  # also when `dst` was already a link to `src`: POSIX rename() then does nothing, tmp stays
        tmp.unlink(missing_ok=True)
    fsync_dir(dst.parent)
    return dst


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside `path` that `remove_stale` recognises (it carries our pid)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_stale(path: str | Path) -> list[Path]:
    """Remove the temporary files of `path` left by writers that are no longer running (a kill
    mid-write); a live writer's are kept. Returns the files removed."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def fsync_dir(folder: Path) -> None:
    """fsync a folder, so that a rename inside it is on disk (POSIX; a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own temp files: nothing of ours is mid-write while we look
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True
