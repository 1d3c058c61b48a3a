"""Checks a trainer makes before any work, and the rule that one folder holds one run.

* The configuration is checked first (``n_epoch >= 1``, a ``model_path`` that is or can become a
  writable folder, a monitored metric the task produces), so a run that would train nothing, or
  fail after its first epoch, fails before it writes anything.
* A new run (``resume`` off) into a folder that holds an earlier run's files removes them first
  (with one warning naming them): ``model.pth``, ``best.safetensors``, ``last.ckpt`` and the logs
  then always describe the same run. ``resume=True`` continues the earlier run instead.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable

from trainhub.engine.runtime import was_seeded

__all__ = ["check_n_epoch", "check_output_dir", "ensure_writable_dir", "warn_unseeded_model", "log_files"]


def check_n_epoch(n_epoch: Any, name: str = "n_epoch") -> None:
    if isinstance(n_epoch, bool) or not isinstance(n_epoch, int) or n_epoch < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n_epoch!r}: a run that trains nothing would only "
                         "replace the files of an earlier run with untrained weights")


def check_output_dir(path: str | os.PathLike, name: str = "model_path") -> None:
    """Cheap checks at construction: ``path`` is a folder, or can be created as one, and writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{name} {str(path)!r} is a file, not a folder; pass a folder for the run's "
                                 "checkpoints and logs")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{name} {str(path)!r} cannot be created: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{name} {str(path)!r} is not writable ({str(existing)!r} is read-only for this "
                              "user); pass a folder you can write to")


def ensure_writable_dir(path: str | os.PathLike, name: str = "model_path") -> Path:
    """Create ``path`` and prove it takes files (read-only mounts fool permission bits)."""
    check_output_dir(path, name)
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".trainhub-write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"{name} {str(path)!r} is not writable ({err.strerror}); pass a folder you can "
                              "write to") from err
    return path


def log_files(log_dir: Path) -> list[Path]:
    """The files trainhub's CSV and TensorBoard loggers write into ``log_dir`` (an MLflow store
    keeps every run apart by itself and is left alone)."""
    files = [log_dir / "metrics.csv", log_dir / "params.json"]
    tensorboard = log_dir / "tensorboard"
    if tensorboard.is_dir():
        files += sorted(tensorboard.glob("events.out.tfevents.*"))
    return files


def existing(paths: Iterable[Path]) -> list[Path]:
    return [p for p in paths if p.exists()]


def warn_unseeded_model(trainer: str, seed: int | None) -> None:
    """``seed=`` seeds training, not the model's initial weights, which were drawn before the
    trainer existed: say so when nothing was seeded before the model was built."""
    if seed is None or was_seeded():
        return
    warnings.warn(
        f"{trainer}(seed={seed}) seeds training, but the model's initial weights were drawn when it was built, "
        f"before anything was seeded, so two runs of this script differ. Call trainhub.seed_everything({seed}) "
        "before building the model",
        UserWarning, stacklevel=4,  # the line that built the trainer (through its subclass)
    )
