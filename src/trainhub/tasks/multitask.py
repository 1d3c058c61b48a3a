"""Multi-task recommendation task: per-task losses, a loss-weighting strategy, per-task metrics.

Convention: the model returns ``[B, n_task]`` (column ``i`` = task ``i``; a dict of ``[B]`` tensors
is accepted too and read in insertion order) and the labels are ``[B, n_task]`` in the same order.
Each column's :class:`~trainhub.output_kinds.OutputKind` decides its loss, metric and prediction:
classification columns are logits (BCE-with-logits, AUC of ``sigmoid(logit)``), regression
columns raw predictions (MSE as loss and metric).

The model may declare ``supervised_outputs`` (indices of the columns that get a loss; ESMM trains
CTR and CTCVR only). The task reads that declaration; it never looks at the model's class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from trainhub.engine.runtime import unwrap_model
from trainhub.engine.task import StepOutput
from trainhub.output_kinds import output_kinds
from trainhub.tasks.ctr import split_batch
from trainhub.tasks.regularization import add_penalty
from trainhub.tasks.weighting import EqualWeighting, LossWeighting

__all__ = ["MTLTask", "MTLStepOutput", "supervised_outputs"]

@dataclass
class MTLStepOutput(StepOutput):
    """A training step's output plus what per-task backward methods need.

    Attributes:
        task_losses: ``[k]`` losses of the supervised outputs, still attached to the graph.
        extra: the non-task part of ``loss`` (regularisation), a tensor or 0.
    """

    task_losses: torch.Tensor | None = None
    extra: torch.Tensor | float = 0.0


def supervised_outputs(model: nn.Module, num_tasks: int) -> list[int]:
    """Column indices that get a loss: the model's ``supervised_outputs`` declaration, else all."""
    declared = getattr(unwrap_model(model), "supervised_outputs", None)
    if declared is None:
        return list(range(num_tasks))
    declared = [int(i) for i in declared]
    bad = [i for i in declared if not 0 <= i < num_tasks]
    if bad or not declared:
        raise ValueError(f"{type(unwrap_model(model)).__name__}.supervised_outputs = {declared} does not fit "
                         f"{num_tasks} tasks")
    return declared


class MTLTask:
    """Train a multi-task model.

    Args:
        task_types: ``"classification"`` or ``"regression"`` per output column.
        weighting: loss-weighting strategy (default: equal weights, the mean of the losses).
        regularization: callable ``model -> penalty`` added to the loss.
        task_names: names used in logs (default ``task_0``, ``task_1``, ...).

    Call :meth:`bind` with the (device-placed) model before training; it sets up the strategy.
    """

    def __init__(self, task_types: Sequence[str], weighting: LossWeighting | None = None,
                 regularization: Callable[[nn.Module], Any] | None = None, task_names: Sequence[str] | None = None):
        self.task_types = list(task_types)
        self.kinds = output_kinds(self.task_types)
        self.num_tasks = len(self.task_types)
        self.task_names = list(task_names) if task_names is not None else [f"task_{i}" for i in range(self.num_tasks)]
        if len(self.task_names) != self.num_tasks:
            raise ValueError(f"{len(self.task_names)} task_names for {self.num_tasks} task_types")
        self.weighting = weighting if weighting is not None else EqualWeighting()
        self.regularization = regularization
        self.supervised: list[int] | None = None
        self.metrics = [kind.new_metric() for kind in self.kinds]

    # -- setup ---------------------------------------------------------------------------------
    def bind(self, model: nn.Module) -> "MTLTask":
        """Read the model's declarations and set up the weighting strategy on it."""
        self.supervised = supervised_outputs(model, self.num_tasks)
        bare = unwrap_model(model)
        self.weighting.setup(bare, [self.task_types[i] for i in self.supervised],
                             [self.task_names[i] for i in self.supervised])
        return self

    def metric_name(self, i: int) -> str:
        """Metric key of task ``i``: ``task_i_auc`` (classification) or ``task_i_mse`` (regression)."""
        return f"{self.task_names[i]}_{self.kinds[i].metric}"

    # -- pieces --------------------------------------------------------------------------------
    def outputs(self, model: nn.Module, x: dict) -> torch.Tensor:
        out = model(x)
        if isinstance(out, dict):
            out = torch.stack([v.reshape(-1) for v in out.values()], dim=1)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"a multi-task model must return a [B, n_task] tensor or a dict; got {type(out).__name__}")
        if out.dim() == 1 and self.num_tasks == 1:
            out = out.unsqueeze(1)
        if out.dim() != 2 or out.shape[1] != self.num_tasks:
            raise ValueError(f"model returned {tuple(out.shape)} outputs for {self.num_tasks} task_types; "
                             f"expected [B, {self.num_tasks}]")
        return out

    def labels(self, y: Any, batch_size: int) -> torch.Tensor:
        if y is None:
            raise ValueError("multi-task batches must be (x, y) pairs with y of shape [B, n_task]; "
                             "this one has no labels")
        if isinstance(y, dict):
            y = torch.stack([v.reshape(-1) for v in y.values()], dim=1)
        y = torch.as_tensor(y).float()
        if y.dim() == 1 and self.num_tasks == 1:
            y = y.unsqueeze(1)
        if y.shape != (batch_size, self.num_tasks):
            raise ValueError(f"labels have shape {tuple(y.shape)}; "
                             f"expected [B, n_task] = [{batch_size}, {self.num_tasks}]")
        for i, kind in enumerate(self.kinds):
            kind.check_labels(y[:, i], self.task_names[i])
        return y

    def task_loss(self, i: int, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.kinds[i].loss(output, target)

    # -- Task protocol -------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Any) -> MTLStepOutput:
        if self.supervised is None:
            self.bind(model)
        x, y = split_batch(batch)
        out = self.outputs(model, x)
        y = self.labels(y, out.shape[0])
        losses = torch.stack([self.task_loss(i, out[:, i], y[:, i]) for i in self.supervised])  # [k]
        loss = self.weighting.combine(losses)
        parts = {f"{self.task_names[i]}_loss": losses[j] for j, i in enumerate(self.supervised)}
        with torch.no_grad():  # unsupervised outputs (ESMM's CVR) are logged, never trained directly
            for i in set(range(self.num_tasks)) - set(self.supervised):
                parts[f"{self.task_names[i]}_loss"] = self.task_loss(i, out[:, i].detach(), y[:, i])
        loss, extra = add_penalty(loss, model, self.regularization, parts)
        return MTLStepOutput(loss, parts, batch_size=out.shape[0], task_losses=losses, extra=extra)

    @property
    def backward(self):
        """The strategy's own backward when it shapes per-task gradients (GradNorm, MetaBalance);
        None otherwise, so the loop's ordinary backward (with gradient accumulation and float16
        scaling) applies."""
        if type(self.weighting).backward is LossWeighting.backward:
            return None
        return self._strategy_backward

    def _strategy_backward(self, out: StepOutput) -> None:
        self.weighting.backward(out.task_losses, out.loss, out.extra)

    def validation_step(self, model: nn.Module, batch: Any) -> None:
        x, y = split_batch(batch)
        out = self.outputs(model, x)
        y = self.labels(y, out.shape[0])
        for i, metric in enumerate(self.metrics):
            metric.update(self.kinds[i].predict(out[:, i]), y[:, i])

    def sync_metrics(self, gather) -> None:
        for m in self.metrics:
            m.sync(gather)

    def metric_names(self) -> list[str]:
        return [self.metric_name(i) for i in range(self.num_tasks)]

    def higher_is_better(self, name: str) -> bool | None:
        directions = {self.metric_name(i): m.higher_is_better for i, m in enumerate(self.metrics)}
        return directions.get(name)

    def compute_metrics(self) -> dict[str, float]:
        values = {self.metric_name(i): m.compute() for i, m in enumerate(self.metrics)}
        for m in self.metrics:
            m.reset()
        return values

    @torch.no_grad()
    def predict_step(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """``[B, n_task]``: probabilities for classification tasks, raw values for regression."""
        x, _ = split_batch(batch)  # (x, y) or x alone
        out = self.outputs(model, x)
        return torch.stack([kind.predict(out[:, i]) for i, kind in enumerate(self.kinds)], dim=1)

    def epoch_logs(self) -> dict[str, float]:
        return self.weighting.epoch_logs()

    def state_dict(self) -> dict:
        return {"weighting": self.weighting.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.weighting.load_state_dict(state["weighting"])
