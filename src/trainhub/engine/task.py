"""The one extension seam of the training loop.

A :class:`Task` says how a batch becomes a loss and how validation batches become metrics. The
loop (:func:`trainhub.engine.fit`) knows nothing else about models, losses or metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["Task", "StepOutput"]


@dataclass
class StepOutput:
    """What one training step produced.

    Attributes:
        loss: the scalar to minimise (already including any regularisation).
        parts: named scalar parts to log (e.g. per-task losses), detached by the loop.
        batch_size: rows in the batch, for sample-weighted epoch averages.
    """

    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    batch_size: int = 1


@runtime_checkable
class Task(Protocol):
    """What the loop needs from a task.

    Optional methods the loop uses when present:

    * ``backward(out: StepOutput) -> None``: replaces ``out.loss.backward()``, for methods that
      shape per-task gradients (GradNorm, MetaBalance).
    * ``epoch_logs() -> dict[str, float]``: extra values logged after each training epoch (e.g.
      loss weights).
    * ``metric_names() -> list[str]``: the keys ``compute_metrics`` returns, so a misspelt
      early-stopping monitor fails before training instead of after the first epoch.
    * ``sync_metrics(gather) -> None``: under several processes, merge every rank's validation
      state before ``compute_metrics``; ``gather(obj)`` returns each rank's ``obj`` in rank order.
      Without it, distributed validation reports rank 0's share only (with a warning).
    """

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput: ...

    def validation_step(self, model: nn.Module, batch: Any) -> None: ...

    def compute_metrics(self) -> dict[str, float]: ...
