"""Checkpoints written atomically and read without executing pickled code.

* Weights go to ``.safetensors`` files (no code can run at load time).
* Resume state (optimizer, scheduler, loop counters, RNG) goes through ``torch.save`` (without
  the zip CRC32s, which ``torch.load`` never checks) and is read back with
  ``torch.load(weights_only=True)``, which refuses anything but tensors and plain data.
* Every write goes through :func:`trainhub.files.atomic_write` (a temporary file, fsynced, then
  renamed), so a crash mid-write leaves the previous checkpoint intact.
* A file that cannot be read (empty, truncated, not a checkpoint) raises :class:`CheckpointError`
  naming the file and what to do about it.
* Every weight and checkpoint file has its size and SHA-256 recorded in ``integrity.json`` beside
  it and checked on every load (:mod:`trainhub.integrity`): a flipped bit inside a tensor raises
  :class:`IntegrityError` instead of loading damaged weights.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from trainhub.engine.runtime import unwrap_model

# The file utilities live below every layer; they stay importable from here.
from trainhub.files import atomic_write, remove_run_files, remove_stale_temps, write_text_atomic
from trainhub.integrity import IntegrityError, record_file, verify_file

__all__ = [
    "CheckpointError", "atomic_write", "write_text_atomic", "save_weights", "load_weights", "save_state",
    "load_state", "Checkpointer", "CheckpointStore", "MainProcessWrites", "remove_stale_temps", "remove_run_files",
    "IntegrityError", "CheckpointIntegrityError",
]


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be used; the message names the file and the way out."""


class CheckpointIntegrityError(CheckpointError, IntegrityError):
    """A weight or checkpoint file differs from what trainhub wrote (its recorded checksum)."""


def _verify(path: Path, hint: str | None = None) -> None:
    try:
        verify_file(path)
    except IntegrityError as err:
        raise CheckpointIntegrityError(f"{err}{'. ' + hint if hint else ''}") from None


def _to_state_dict(obj: Any) -> Any:
    return obj.state_dict() if hasattr(obj, "state_dict") else obj


def plain_state_dict(model: nn.Module, copy: bool = True) -> dict[str, torch.Tensor]:
    """CPU copy of a model's weights with any DataParallel/DDP ``module.`` wrapper removed.

    ``copy=False`` skips the copy of tensors already on the CPU: enough for writing them out
    right away, and it spares a model-sized transient allocation.
    """
    return {k: v.detach().to("cpu", copy=copy) for k, v in unwrap_model(model).state_dict().items()}


def save_weights(path: str | os.PathLike, model_or_state: nn.Module | dict, metadata: dict | None = None) -> Path:
    """Write weights as safetensors (atomically). Accepts a module or a state dict."""
    from safetensors.torch import save_file

    state = unwrap_model(model_or_state).state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    # One CPU copy per tensor (not two): clone() gives each its own storage, which safetensors
    # requires (fused embedding tables hand out views of one weight).
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta), before_replace=_recorder(path))


def _recorder(path: str | os.PathLike):
    """Record the finished file's size and SHA-256 in ``integrity.json`` beside it (checked on load)."""
    name = Path(path).name
    return lambda tmp: record_file(tmp, name)


def load_weights(path: str | os.PathLike, model: nn.Module | None = None, strict: bool = True):
    """Read safetensors weights; load them into ``model`` when given, else return the state dict.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is empty, truncated or not a safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    _verify(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({path.stat().st_size} bytes; {err}). It is damaged or "
            "was not written by trainhub: restore it from a copy, or delete it and train again"
        ) from err
    if model is None:
        return state
    unwrap_model(model).load_state_dict(state, strict=strict)
    return model


def save_state(path: str | os.PathLike, payload: dict[str, Any], *, zip_crc32: bool = False) -> Path:
    """Atomically ``torch.save`` a dict, turning modules/optimizers/schedulers into state dicts.

    ``zip_crc32=False`` (resume state) skips the zip records' CRC32s (:func:`_save_without_crc32`);
    files meant for other tools (``model.pth``) pass ``True``.
    """
    state = {k: _to_state_dict(v) for k, v in payload.items() if v is not None}
    if isinstance(payload.get("model"), nn.Module):
        state["model"] = plain_state_dict(payload["model"], copy=False)
    return atomic_write(path, lambda tmp: torch.save(state, tmp) if zip_crc32 else _save_without_crc32(state, tmp),
                        before_replace=_recorder(path))


def _save_without_crc32(obj: Any, path: str) -> None:
    """``torch.save`` without the zip format's per-record CRC32s.

    ``torch.load`` never reads them, and computing them was most of the time of writing a resume
    checkpoint (0.1-0.4 s of a one-million-row table's 310 MB; the write itself is a page-cache
    copy). A zip tool (``unzip -t``, Python's ``zipfile``) reports such a file's records as
    having bad CRCs. Weight files (``model.pth``, ``.safetensors``) keep their usual form.
    """
    serialization = torch.serialization
    if not hasattr(serialization, "set_crc32_options"):
        torch.save(obj, path)
        return
    previous = serialization.get_crc32_options()
    serialization.set_crc32_options(False)
    try:
        torch.save(obj, path)
    finally:
        serialization.set_crc32_options(previous)


def load_state(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
               hint: str | None = None) -> dict[str, Any]:
    """Load a file written by :func:`save_state`; never unpickles arbitrary objects.

    Args:
        hint: what the user can do about a damaged file (appended to the error message).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is empty, truncated or not a checkpoint.
        pickle.UnpicklingError: the file holds objects other than tensors and plain data (it is
            refused, never executed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    way_out = hint or "restore it from a copy, or delete it"
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the write that made it never completed. {way_out}")
    _verify(path, hint)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            reason = next((ln.strip() for ln in str(err).splitlines() if "WeightsUnpickler error" in ln), "")
            raise pickle.UnpicklingError(
                f"{path} holds objects other than tensors and plain data, so it was refused without running any "
                f"of its code ({reason.split('. ')[0]}). Only load files you wrote with trainhub"
            ) from err
        raise CheckpointError(f"{path} is damaged ({size} bytes; {_first_line(err)}). {way_out}") from err
    except (RuntimeError, OSError, EOFError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{path} is truncated or damaged ({size} bytes; {type(err).__name__}: {_first_line(err)}). {way_out}"
        ) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text.split(". This is an internal")[0]  # torch's zip reader adds a paragraph of advice
    return text[:200]


RESUME_HINT = ("delete it to start a new run, or pass resume=False (a new run replaces it); "
               "copying last.ckpt aside after each epoch keeps an older one to fall back on")


@runtime_checkable
class CheckpointStore(Protocol):
    """What the loop needs from a checkpointer: the best weights and the resume state.

    :class:`Checkpointer` keeps them as two files; :class:`trainhub.text.TextCheckpointer` keeps
    the best model as a reloadable folder.
    """

    @property
    def last_path(self) -> Path: ...

    def start_fresh(self) -> list[Path]: ...

    def save_best(self, model: nn.Module, metadata: dict | None = None) -> Path: ...

    def load_best(self, model: nn.Module) -> nn.Module: ...

    def has_best(self) -> bool: ...

    def save_resume(self, payload: dict[str, Any]) -> Path | None: ...

    def load_resume(self) -> dict[str, Any] | None: ...


class Checkpointer:
    """Keeps ``best.safetensors`` (best validation weights) and ``last.ckpt`` (everything a
    resume needs) in one folder.

    Args:
        dirpath: folder for the files (created on first write).
        save_last: write ``last.ckpt`` after every epoch so training can resume.
    """

    #: what the user can do about a damaged ``last.ckpt`` (appended to the error message)
    resume_hint = RESUME_HINT

    def __init__(self, dirpath: str | os.PathLike, save_last: bool = True):
        self.dirpath = Path(dirpath)
        self.save_last = save_last

    @property
    def best_path(self) -> Path:
        return self.dirpath / "best.safetensors"

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def run_files(self) -> list[Path]:
        """The files one run writes here (the loop's part; trainers add their own)."""
        return [self.best_path, self.last_path]

    def start_fresh(self) -> list[Path]:
        """Remove an earlier run's files so they never mix with a new run's."""
        return remove_run_files(self.run_files(), self.dirpath)

    def save_best(self, model: nn.Module, metadata: dict | None = None) -> Path:
        return save_weights(self.best_path, model, metadata)

    def load_best(self, model: nn.Module) -> nn.Module:
        return load_weights(self.best_path, model)

    def has_best(self) -> bool:
        return self.best_path.is_file()

    def save_resume(self, payload: dict[str, Any]) -> Path | None:
        return save_state(self.last_path, payload) if self.save_last else None

    def load_resume(self) -> dict[str, Any] | None:
        """The resume state, or None when there is no ``last.ckpt``; a damaged file is an error."""
        return load_state(self.last_path, hint=self.resume_hint) if self.last_path.is_file() else None


class MainProcessWrites:
    """A checkpointer as every process of a run sees it: reads pass through, writes happen on the
    main process only (under torchrun every rank holds the same weights, so one copy is written).

    :func:`trainhub.engine.fit` wraps the checkpointer it is given in this, so the rank check is
    written once, here, rather than at each place the loop saves.
    """

    def __init__(self, inner: CheckpointStore, is_main: bool):
        self.inner = inner
        self.is_main = is_main

    @property
    def last_path(self) -> Path:
        return self.inner.last_path

    def start_fresh(self) -> list[Path]:
        return self.inner.start_fresh() if self.is_main else []

    def save_best(self, model: nn.Module, metadata: dict | None = None) -> Path | None:
        return self.inner.save_best(model, metadata) if self.is_main else None

    def save_resume(self, payload: dict[str, Any]) -> Path | None:
        return self.inner.save_resume(payload) if self.is_main else None

    def load_best(self, model: nn.Module) -> nn.Module:
        return self.inner.load_best(model)

    def has_best(self) -> bool:
        return self.inner.has_best()

    def load_resume(self) -> dict[str, Any] | None:
        return self.inner.load_resume()
