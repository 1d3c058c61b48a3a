"""Checkpoints written atomically and read without executing pickled code.

* Weights go to ``.safetensors`` files (no code can run at load time).
* Resume state (optimizer, scheduler, loop counters, RNG) goes through ``torch.save`` and is read
  back with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain data.
* Every write lands in a temporary file in the same folder, is fsynced, then renamed over the
  target, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from trainhub.engine.runtime import unwrap_model

__all__ = [
    "atomic_write", "write_text_atomic", "save_weights", "load_weights", "save_state", "load_state", "Checkpointer",
]


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then atomically move the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a small text file (JSON, YAML) atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


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
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


def load_weights(path: str | os.PathLike, model: nn.Module | None = None, strict: bool = True):
    """Read safetensors weights; load them into ``model`` when given, else return the state dict."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    state = load_file(str(path))
    if model is None:
        return state
    unwrap_model(model).load_state_dict(state, strict=strict)
    return model


def save_state(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Atomically ``torch.save`` a dict, turning modules/optimizers/schedulers into state dicts."""
    state = {k: _to_state_dict(v) for k, v in payload.items() if v is not None}
    if isinstance(payload.get("model"), nn.Module):
        state["model"] = plain_state_dict(payload["model"], copy=False)
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a file written by :func:`save_state`; never unpickles arbitrary objects."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


class Checkpointer:
    """Keeps ``best.safetensors`` (best validation weights) and ``last.ckpt`` (everything a
    resume needs) in one folder.

    Args:
        dirpath: folder for the files (created on first write).
        save_last: write ``last.ckpt`` after every epoch so training can resume.
    """

    def __init__(self, dirpath: str | os.PathLike, save_last: bool = True):
        self.dirpath = Path(dirpath)
        self.save_last = save_last

    @property
    def best_path(self) -> Path:
        return self.dirpath / "best.safetensors"

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def save_best(self, model: nn.Module, metadata: dict | None = None) -> Path:
        return save_weights(self.best_path, model, metadata)

    def load_best(self, model: nn.Module) -> nn.Module:
        return load_weights(self.best_path, model)

    def has_best(self) -> bool:
        return self.best_path.is_file()

    def save_resume(self, payload: dict[str, Any]) -> Path | None:
        return save_state(self.last_path, payload) if self.save_last else None

    def load_resume(self) -> dict[str, Any] | None:
        return load_state(self.last_path) if self.last_path.is_file() else None
