"""What ``last.ckpt`` holds besides weights and optimizer state, so a resumed run continues exactly.

At the end of every epoch the loop stores, per rank:

* the random streams of Python, NumPy, torch on the CPU and every visible CUDA device (dropout,
  negative sampling and unseeded shuffling all draw from them);
* the training loader's state: the ``torch.Generator`` of a DataLoader and of its sampler (a
  seeded ``DataLoader(generator=g)`` moves ``g`` on every epoch), and ``state_dict()`` of loaders
  that have one (e.g. the multi-task loader's task-sampling state).

Samplers whose order is a function of ``(seed, epoch)`` (``set_epoch``) need nothing more: the loop
calls ``set_epoch`` with the epoch number it resumes at. A run killed in the middle of an epoch
resumes from the start of that epoch (the last checkpoint) and replays it with the same batches
and random draws, so it ends with the same weights as a run that was never interrupted.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["rng_state", "set_rng_state", "loader_state", "load_loader_state"]


def rng_state() -> dict:
    """Every global random stream of this process (CPU and CUDA), as tensors and plain data."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "python": list(py_state[1]),
        "python_pos": py_state[2] if py_state[2] is not None else -1,
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured (CUDA streams when this process sees as many GPUs)."""
    torch.set_rng_state(state["torch"])
    pos = state["python_pos"]
    random.setstate((3, tuple(state["python"]), None if pos == -1 else pos))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)


def _generators(loader: Any) -> dict[str, torch.Generator]:
    found: dict[str, torch.Generator] = {}
    for name, owner in (("loader", loader), ("sampler", getattr(loader, "sampler", None)),
                        ("batch_sampler", getattr(loader, "batch_sampler", None))):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and gen.device.type == "cpu":
            found[name] = gen
    return found


def loader_state(loader: Any) -> dict:
    """The training loader's resumable state (see the module docstring)."""
    state: dict[str, Any] = {"generators": {k: g.get_state() for k, g in _generators(loader).items()}}
    own = getattr(loader, "state_dict", None)
    if callable(own) and not isinstance(loader, torch.utils.data.DataLoader):
        state["loader"] = own()
    return state


def load_loader_state(loader: Any, state: dict | None) -> None:
    """Put ``loader`` back where :func:`loader_state` found it."""
    if not state:
        return
    gens = _generators(loader)
    for name, saved in state.get("generators", {}).items():
        if name in gens:
            gens[name].set_state(saved)
    own = getattr(loader, "load_state_dict", None)
    if "loader" in state and callable(own):
        own(state["loader"])
