"""Atomic file writes, below every other module (the engine, data, logging and text all write files).

* Every write lands in a temporary file in the same folder, is fsynced, then renamed over the
  target, so a crash mid-write leaves the previous file intact. A temporary file left by a
  process killed mid-write is removed by the next write of the same target.
* Files are created with the process umask (``0644`` under the usual ``022``), like any other
  file the user writes, so a serving process or another user sharing the folder can read them.

This module imports nothing from trainhub, so any layer may use it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

__all__ = ["atomic_write", "write_text_atomic", "remove_stale_temps", "remove_run_files", "read_json"]


def _temp_pattern(name: str) -> re.Pattern:
    # ".<name>.<pid>.<hex>.tmp" (and the older ".<name>.<random>.tmp" of tempfile.mkstemp)
    return re.compile(rf"^\.{re.escape(name)}\.(\d+\.)?[0-9A-Za-z_]+\.tmp$")


def _writer_alive(name: str) -> bool:
    """Whether the process named in a temporary file's name (``.<name>.<pid>.<hex>.tmp``) still runs:
    its file is being written (e.g. by another rank of a torchrun job) and is not stale."""
    parts = name.rsplit(".", 3)
    if len(parts) < 4 or not parts[1].isdigit():
        return False  # the older random names carry no writer
    pid = int(parts[1])
    if pid == os.getpid():
        return False  # this process writes one target at a time: its own leftovers are stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files of ``path`` left behind by a writer that was killed mid-write (never
    the file of a writer that is still running)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = _temp_pattern(path.name)
    removed = []
    for entry in path.parent.iterdir():
        if pattern.match(entry.name) and not _writer_alive(entry.name):
            try:
                entry.unlink()
                removed.append(entry)
            except FileNotFoundError:
                pass
    return removed


def _fsync_dir(folder: Path) -> None:
    try:  # make the rename itself durable; not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None],
                 before_replace: Callable[[Path], None] | None = None) -> Path:
    """Call ``write(tmp_path)`` then atomically move the result to ``path``.

    The temporary file is created with mode ``0666`` minus the process umask (``tempfile``'s
    ``0600`` would make checkpoints unreadable to anyone but their writer). ``before_replace(tmp)``
    runs on the finished temporary file just before the rename (e.g. to record its checksum).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    mode = tmp.stat().st_mode & 0o777  # 0666 minus the umask, read without touching the umask
    try:
        try:
            write(str(tmp))
        except RuntimeError as err:  # torch's zip writer reports a full disk as a bad stream position
            full = _disk_full(err, path)
            if full is None:
                raise
            raise full from err
        if tmp.stat().st_mode & 0o777 != mode:  # some writers (safetensors) recreate the file as 0600
            os.chmod(tmp, mode)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _disk_full(err: RuntimeError, path: Path) -> OSError | None:
    """An ``OSError(ENOSPC)`` naming ``path`` when ``err`` is a writer's report of a short write on a
    full disk (torch: "unexpected pos ...", "file write failed"), else None."""
    import errno

    text = str(err)
    if "unexpected pos" not in text and "write failed" not in text:
        return None
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = 0
    return OSError(errno.ENOSPC, f"No space left on device ({free} bytes free; the writer said: "
                                 f"{text.strip().splitlines()[-1][:120]})", str(path))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a small text file (JSON, YAML) atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def remove_run_files(paths: list[Path], folder: Path) -> list[Path]:
    """Delete the files (and folders) of an earlier run that a new run in ``folder`` replaces,
    with one warning naming them; returns what was removed."""
    removed = []
    for path in paths:
        remove_stale_temps(path)
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif path.exists():
            path.unlink()
            removed.append(path)
    if removed:
        names = ", ".join(str(p.relative_to(folder)) if p.is_relative_to(folder) else str(p) for p in removed)
        log.warning(
            "%s held files of an earlier run (%s); a new run (resume off) replaces them, so they were removed. "
            "Use another folder to keep both runs, or resume to continue the earlier one", folder, names)
    return removed


def read_json(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> Any:
    """Parse a JSON file trainhub wrote; a damaged one (not UTF-8, not JSON, not an object with
    ``keys``) raises ``ValueError`` naming the file and the problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 JSON file (byte {err.start}: {err.reason}); it is damaged or "
                         "was not written by trainhub: restore it from a copy or write it again") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); restore "
                         "it from a copy or write it again") from None
    if keys:
        missing = [k for k in keys if not isinstance(data, dict) or k not in data]
        if missing:
            raise ValueError(f"{path} lacks {missing[0]!r}; it is damaged or was not written by trainhub")
    return data
