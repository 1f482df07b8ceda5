"""One driver per sweep folder: an advisory lock that the operating system drops with its holder.

`folder_lock(out)` takes an exclusive `flock` on ``out/sweep.lock`` for the lifetime of a sweep
driver. A second driver on the same folder gets `SweepLocked` at once, naming the holder's pid
and start time, instead of training every run a second time under the first. A driver that was
killed holds nothing: the kernel releases a dead process's locks, so no stale lock outlives it
(the pid left in the file is only for the message). Readers (`lrtransfer status`, `report`)
take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "sweep.lock"


class SweepLocked(RuntimeError):
    """Another live process is driving a sweep in this folder."""


@contextlib.contextmanager
def folder_lock(out: str | Path) -> Iterator[None]:
    """Hold the sweep folder `out` for this process (see the module doc)."""
    path = Path(out) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SweepLocked(f"out: {out} is in use by another sweep driver ({holder}); wait for it to finish, "
                          "or choose another folder") from None
    try:
        os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):  # the note is for the message only: a full disk holds the lock all the same
            os.pwrite(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
