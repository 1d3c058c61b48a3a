"""Weight and checkpoint files check their own bytes when read back.

A flipped bit inside a tensor still loads: safetensors and ``torch.load`` only notice damage to
a header. So every weight or checkpoint file trainhub writes has its size and XXH3-128 checksum
recorded in ``integrity.json`` beside it, and every load compares them before reading the file.

* The record is written before the file is renamed into place, and keeps the previous entry: a
  crash between the two leaves an old file that still matches (no false alarm).
* Files without a record (written by other tools, or before records existed) load unverified.
* ``integrity.json`` is updated under an ``flock`` on its folder, so two processes writing
  different files of one folder do not lose each other's entries.

The checksum guards against damage (disk, copy, bit rot), not against tampering: XXH3-128 runs at
about 13 GB/s on the benchmark machine where SHA-256 runs at 1.5 GB/s, which kept the cost of a
one-epoch DeepFM fit under 3% (``make bench``, ``docs/failures.md``). This module imports nothing
from trainhub but :mod:`trainhub.files`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from trainhub.files import write_text_atomic

__all__ = ["RECORD", "IntegrityError", "file_digest", "record_file", "verify_file"]

log = logging.getLogger(__name__)

RECORD = "integrity.json"
ALGORITHM = "xxh3_128"
_CHUNK = 1 << 20


class IntegrityError(RuntimeError):
    """A file differs from what trainhub wrote; the message names it and the way out."""


def file_digest(path: str | os.PathLike, algorithm: str = ALGORITHM) -> dict[str, Any]:
    """``{"bytes": size, algorithm: hex digest}`` of a file, read in 1 MiB chunks
    (``algorithm``: ``"xxh3_128"`` or any :mod:`hashlib` name such as ``"sha256"``)."""
    if algorithm == "xxh3_128":
        import xxhash

        digest = xxhash.xxh3_128()
    else:
        digest = hashlib.new(algorithm)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, algorithm: digest.hexdigest()}


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: one writer per folder is the rule anyway
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_record(folder: Path) -> dict[str, Any]:
    path = folder / RECORD
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IntegrityError(f"{path} is damaged ({err}); delete it to load the files of {folder} unverified, "
                             "or restore it from a copy") from None
    return data.get("files", {}) if isinstance(data, dict) else {}


def record_file(written: str | os.PathLike, name: str | None = None) -> dict[str, Any]:
    """Record the digest of ``written`` (a finished temporary file) under ``name`` (default: its
    own name) in its folder's ``integrity.json``; returns the digest."""
    written = Path(written)
    name = name or written.name
    digest = file_digest(written)
    folder = written.parent
    with _folder_lock(folder):
        files = _read_record(folder)
        old = files.get(name)
        entry = dict(digest)
        if old and (old.get("bytes"), old.get(ALGORITHM)) != (digest["bytes"], digest[ALGORITHM]):
            entry["previous"] = {"bytes": old["bytes"], ALGORITHM: old.get(ALGORITHM)}
        files[name] = entry
        write_text_atomic(folder / RECORD, json.dumps({"algorithm": ALGORITHM, "files": files}, indent=1))
    return digest


def verify_file(path: str | os.PathLike) -> bool:
    """Check ``path`` against its folder's record; True when verified, False when unrecorded.

    Raises:
        IntegrityError: the file's size or SHA-256 is not what trainhub wrote.
    """
    path = Path(path)
    entry = _read_record(path.parent).get(path.name)
    if entry is None:
        return False
    size = path.stat().st_size
    known = [entry] + ([entry["previous"]] if "previous" in entry else [])
    way_out = ("It changed after trainhub wrote it (a disk or copy error, or an edit): restore it from a copy or "
               f"train again. To load it anyway, delete its entry in {path.parent / RECORD}")
    if all(size != k["bytes"] for k in known):
        raise IntegrityError(f"{path} is truncated or damaged: it has {size} bytes, {entry['bytes']} were written. "
                             f"{way_out}")
    got = file_digest(path)[ALGORITHM]
    if all(got != k.get(ALGORITHM) for k in known):
        raise IntegrityError(f"{path} does not match the checksum recorded when it was written ({got[:12]}... "
                             f"instead of {str(entry.get(ALGORITHM))[:12]}...). {way_out}")
    return True
