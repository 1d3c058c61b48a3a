"""The one extension seam of the training loop.

A :class:`Task` says how a batch becomes a loss and how validation batches become metrics. The
loop (:func:`trainhub.engine.fit`) knows nothing else about models, losses or metrics.

A task may also implement any of the small optional protocols below; the loop checks for them
with ``isinstance`` (they are ``runtime_checkable``), so each one is written down here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["Task", "StepOutput", "OwnBackward", "EpochLogs", "NamedMetrics", "DirectedMetrics", "SyncedMetrics",
           "Stateful", "custom_backward"]


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

    Optional protocols the loop uses when a task implements them: :class:`OwnBackward`,
    :class:`EpochLogs`, :class:`NamedMetrics`, :class:`DirectedMetrics`, :class:`SyncedMetrics`
    and :class:`Stateful`.
    """

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput: ...

    def validation_step(self, model: nn.Module, batch: Any) -> None: ...

    def compute_metrics(self) -> dict[str, float]: ...


@runtime_checkable
class OwnBackward(Protocol):
    """A task whose loss-weighting method shapes per-task gradients (GradNorm, MetaBalance) runs
    its own backward pass in place of ``out.loss.backward()``.

    ``backward`` may be None: a task whose strategy is chosen at construction says so when this
    run's strategy needs no backward of its own, and the loop's ordinary backward (with gradient
    accumulation and float16 scaling) applies.
    """

    def backward(self, out: StepOutput) -> None: ...


@runtime_checkable
class EpochLogs(Protocol):
    """Extra values logged after each training epoch (e.g. loss weights)."""

    def epoch_logs(self) -> dict[str, float]: ...


@runtime_checkable
class NamedMetrics(Protocol):
    """The keys ``compute_metrics`` returns, so a misspelt early-stopping monitor fails before
    training instead of after the first epoch."""

    def metric_names(self) -> list[str]: ...


@runtime_checkable
class DirectedMetrics(Protocol):
    """Which way each metric improves, declared by the task that defines it (from its metric
    objects' ``higher_is_better``), so early stopping, a plateau scheduler and the trainers never
    guess it from a name. None for a key the task does not produce."""

    def higher_is_better(self, name: str) -> bool | None: ...


@runtime_checkable
class SyncedMetrics(Protocol):
    """Under several processes, merge every rank's validation state before ``compute_metrics``;
    ``gather(obj)`` returns each rank's ``obj`` in rank order. Without it, distributed validation
    reports rank 0's share only (with a warning)."""

    def sync_metrics(self, gather: Callable[[Any], list[Any]]) -> None: ...


@runtime_checkable
class Stateful(Protocol):
    """State saved in ``last.ckpt`` and put back on resume (a task's loss weights, a logger's
    step counters)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def custom_backward(task: Any) -> Callable[[StepOutput], None] | None:
    """The task's own backward pass, or None when the loop's ordinary one applies."""
    return task.backward if isinstance(task, OwnBackward) else None
