"""Saved indexes check their own files on load.

A truncated or altered index file often still loads: annoy memory-maps whatever it finds and
returns wrong neighbours without a word. So every save records, per file, its size and SHA-256
next to the vector count and dimension, and every load compares them before reading the file.

Two layouts share the check:

* index folders (``TorchIndex``, ``FaissIndex``, ``AnnoyIndex``, ``MilvusIndex``): ``meta.json``,
  written last, carries ``"files": {name: {"bytes", "sha256"}}``;
* single index files (adapters that save one file): a JSON sidecar ``<file>.json`` written
  atomically with :func:`write_sidecar` and checked by :func:`verify_sidecar`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable

from trainhub.files import read_json, write_text_atomic
from trainhub.integrity import file_digest as _digest

__all__ = ["IndexIntegrityError", "file_digest", "digest_files", "verify_files", "check_shape", "write_sidecar",
           "verify_sidecar", "sidecar_path"]

log = logging.getLogger(__name__)

class IndexIntegrityError(ValueError):
    """A saved index file does not match what was saved; the message names the file."""


def file_digest(path: str | Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex digest}`` of a file."""
    return _digest(path, "sha256")


def digest_files(folder: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """:func:`file_digest` of each named file in ``folder``."""
    return {name: file_digest(Path(folder) / name) for name in names}


def verify_files(folder: Path, meta: dict) -> None:
    """Raise :class:`IndexIntegrityError` naming the first file of ``meta["files"]`` that is missing,
    has another size, or another SHA-256. Indexes saved before checksums existed load with a warning."""
    files = meta.get("files")
    if files is None:
        log.warning("%s was saved without checksums, so its files cannot be verified; save it again", folder)
        return
    for name, want in files.items():
        _check_file(Path(folder) / name, want)


def _check_file(file: Path, want: dict) -> None:
    if not file.is_file():
        raise IndexIntegrityError(f"index file {file} is missing")
    size = file.stat().st_size
    if size != want["bytes"]:
        raise IndexIntegrityError(f"index file {file} has {size} bytes, {want['bytes']} were saved "
                                  "(truncated or replaced); rebuild or restore the index")
    got = file_digest(file)["sha256"]
    if got != want["sha256"]:
        raise IndexIntegrityError(f"index file {file} does not match its saved SHA-256 ({got[:12]}... instead of "
                                  f"{want['sha256'][:12]}...); rebuild or restore the index")


def check_shape(what: str | Path, meta: dict, count: int, dim: int) -> None:
    """Raise :class:`IndexIntegrityError` unless a loaded index holds ``meta``'s count and dim."""
    if "count" in meta and int(meta["count"]) != count:
        raise IndexIntegrityError(f"{what} holds {count} vectors, {meta['count']} were saved")
    if "dim" in meta and int(meta["dim"]) != dim:
        raise IndexIntegrityError(f"{what} holds vectors of dimension {dim}, {meta['dim']} was saved")


def sidecar_path(file: str | Path) -> Path:
    """``index.ann`` -> ``index.ann.json``."""
    file = Path(file)
    return file.with_name(file.name + ".json")


def write_sidecar(file: str | Path, *, count: int, dim: int, **extra: Any) -> Path:
    """Write ``<file>.json`` (atomically) with the file's size and SHA-256, ``count`` and ``dim``.

    Call it after the index file is complete; ``extra`` keys (metric, kind, ...) are kept as given.
    """
    file = Path(file)
    record = {"file": file.name, "count": int(count), "dim": int(dim), **extra, **file_digest(file)}
    return write_text_atomic(sidecar_path(file), json.dumps(record, indent=2))


def verify_sidecar(file: str | Path, count: int | None = None, dim: int | None = None) -> dict[str, Any]:
    """Check ``file`` against ``<file>.json`` and return the record.

    Raises :class:`IndexIntegrityError` naming the file when the sidecar is missing or the file's
    size or SHA-256 differ, and, when ``count``/``dim`` are given (read from the loaded index),
    when they differ from the saved ones.
    """
    file = Path(file)
    sidecar = sidecar_path(file)
    if not sidecar.is_file():
        raise IndexIntegrityError(f"index file {file} has no checksum sidecar {sidecar.name}; "
                                  "it was not saved by trainhub or the sidecar was lost")
    record = read_json(sidecar, keys=("bytes", "sha256"))
    _check_file(file, record)
    if count is not None or dim is not None:
        check_shape(file, record, record["count"] if count is None else count, record["dim"] if dim is None else dim)
    return record
