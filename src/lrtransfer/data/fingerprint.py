"""What a text corpus *is*, as a short fingerprint that goes into a run's config and hence its hash.

A run's identity is the hash of its resolved config; naming a corpus by its path alone would let an
edited file keep the old identity, and a re-run would report the old result as "already finished".
So the text config carries ``data.fingerprint``, filled when the config is resolved:

- ``corpus: files``: the size and SHA-256 of every matched file, in reading order (``sha256:…``);
- ``corpus: shakespeare``: the corpus's own SHA-256, which every fetch is verified against;
- ``corpus: stdlib``: this Python's version and the names and sizes of the files read
  (``python-3.11.7:…``).

Content hashes are cached per process by (path, size, mtime, inode), so validating the same files
again costs a `stat` per file; a file's content is read once per version. A file that looks binary
(NUL bytes near its start) is accepted as bytes with a `CorpusWarning` naming it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path

from lrtransfer.data.corpus import (
    SHAKESPEARE_BYTES,
    SHAKESPEARE_PACKAGE,
    SHAKESPEARE_SHA256,
    TEXT_SEPARATOR,
    resolve_paths,
    stdlib_files,
)

BINARY_PROBE = 8192  # bytes inspected for NUL, as git does to tell binary from text
_DIGESTS: dict[tuple[str, int, int, int], str] = {}


class CorpusWarning(UserWarning):
    """A corpus file is used although it does not look like text."""


@dataclass(frozen=True)
class CorpusInfo:
    """A corpus's `fingerprint`, its size in bytes once concatenated, and a `label` for messages."""

    fingerprint: str
    n_bytes: int
    label: str


def corpus_info(corpus: str, paths: list[str] | None = None) -> CorpusInfo:
    """Fingerprint and size of the named corpus (see the module doc); reads only what changed.

    Raises FileNotFoundError naming a path that matches no file or is a folder, and ValueError when
    every matched file is empty.
    """
    if corpus == "shakespeare":
        return CorpusInfo(f"sha256:{SHAKESPEARE_SHA256[:16]}", SHAKESPEARE_BYTES, f"the {SHAKESPEARE_PACKAGE} corpus")
    if corpus == "stdlib":
        return _stdlib_info()
    if corpus == "files":
        return _files_info(list(paths or []))
    raise ValueError(f"corpus: {corpus!r} is not one of shakespeare|stdlib|files")


def _files_info(paths: list[str]) -> CorpusInfo:
    files = resolve_paths(paths)
    sizes = [f.stat().st_size for f in files]
    label = str(files[0]) if len(files) == 1 else f"the {len(files)} files matched by {paths}"
    if not any(sizes):
        raise ValueError(f"paths: {label} {'is' if len(files) == 1 else 'are all'} empty")
    entries = "".join(f"{size} {file_digest(f)}\n" for f, size in zip(files, sizes))
    return CorpusInfo(f"sha256:{_sha(entries)}", _joined(sizes), label)


@functools.lru_cache(maxsize=1)
def _stdlib_info() -> CorpusInfo:
    files = stdlib_files()
    sizes = [f.stat().st_size for f in files]
    entries = "".join(f"{size} {f.name}\n" for f, size in zip(files, sizes))
    return CorpusInfo(f"python-{platform.python_version()}:{_sha(entries)}", _joined(sizes),
                      f"this Python's stdlib ({len(files)} files)")


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes, cached by (path, size, mtime, inode); warns once if it looks binary."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _DIGESTS:
        data = Path(path).read_bytes()
        if b"\0" in data[:BINARY_PROBE]:
            warnings.warn(f"data.paths: {path} does not look like text (NUL bytes in its first {BINARY_PROBE} "
                          "bytes); it is read as bytes all the same", CorpusWarning, stacklevel=2)
        _DIGESTS[key] = hashlib.sha256(data).hexdigest()
    return _DIGESTS[key]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _joined(sizes: list[int]) -> int:
    """Bytes of the files joined by `TEXT_SEPARATOR`, as the loaders join them."""
    return sum(sizes) + len(TEXT_SEPARATOR) * (len(sizes) - 1)
