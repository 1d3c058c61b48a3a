"""Where training runs: device, data-parallel wrapping, process group, seeding.

A :class:`Runtime` is the one object that knows about devices and processes. Under ``torchrun``
(``WORLD_SIZE > 1`` in the environment) it joins the process group and wraps the model in
DistributedDataParallel; otherwise it is a single process on one device, optionally with
``nn.DataParallel`` over several GPUs (Torch-RecHub's ``gpus=[...]``).
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["Runtime", "seed_everything", "unwrap_model", "move_to_device", "resolve_device"]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside any DataParallel / DistributedDataParallel wrapper."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch of dicts, lists and tuples to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [move_to_device(v, device) for v in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse ``"cpu"``, ``"cuda"``, ``"cuda:1"``; fail clearly when the device is absent."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} requested but CUDA is not available on this machine")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {str(device)!r} requested but only {torch.cuda.device_count()} GPU(s) are visible"
            )
    return dev


@dataclass
class Runtime:
    """Device and process placement.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:0"``, ...
        gpus: GPU ids for ``nn.DataParallel`` (one or more); ignored under torchrun.
        seed: when given, everything is seeded at construction (offset by rank under torchrun).

    Example:
        >>> rt = Runtime("cpu", seed=0)
        >>> model = rt.setup_model(model)
    """

    device: str | torch.device = "cpu"
    gpus: Sequence[int] | None = None
    seed: int | None = None
    rank: int = field(default=0, init=False)
    world_size: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world_size > 1:
            self._init_distributed()
        elif self.gpus:
            for g in self.gpus:
                resolve_device(f"cuda:{g}")
            self.device = torch.device(f"cuda:{self.gpus[0]}")
        self.device = resolve_device(self.device)
        if self.seed is not None:
            seed_everything(self.seed + self.rank)

    def _init_distributed(self) -> None:
        import torch.distributed as dist

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.device(self.device).type == "cuda":
            self.device = torch.device(f"cuda:{local_rank}")
            torch.cuda.set_device(self.device)
            backend = "nccl"
        else:
            backend = "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        log.info("joined process group: rank %d of %d (%s)", self.rank, self.world_size, backend)
        if self.is_main:
            log.warning("multi-process training is partial: gradients are averaged by DDP, but loaders are not "
                        "sharded (use a DistributedSampler) and validation metrics are computed per process")

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True in the process that writes files and logs (rank 0)."""
        return self.rank == 0

    def setup_model(self, model: nn.Module) -> nn.Module:
        """Move the model to the device and wrap it for data parallelism when configured."""
        model = model.to(self.device)
        if self.is_distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.gpus and len(self.gpus) >= 1 and self.device.type == "cuda":
            return nn.DataParallel(model, device_ids=list(self.gpus))
        return model

    def to_device(self, batch: Any) -> Any:
        return move_to_device(batch, self.device)

    def barrier(self) -> None:
        if self.is_distributed:
            import torch.distributed as dist

            dist.barrier()
