"""Binary click-through-rate task: BCE-with-logits loss, AUC and log-loss metrics."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from trainhub.engine.task import StepOutput
from trainhub.metrics import BinaryAUC, LogLoss
from trainhub.output_kinds import check_binary_labels  # the one label check, importable from here too
from trainhub.tasks.regularization import add_penalty

__all__ = ["CTRTask", "LogitsOnly", "LogitsWithAuxLoss", "check_binary_labels", "split_batch"]


def split_batch(batch: Any) -> tuple[dict, torch.Tensor | None]:
    """``(x, y)`` -> ``(x, y)``; a bare ``x`` dict -> ``(x, None)``."""
    if isinstance(batch, dict):
        return batch, None
    x, y = batch
    return x, y


class LogitsOnly:
    """Output adapter for models that return click logits ``[B]`` (Torch-RecHub's ``loss_mode=True``)."""

    def __call__(self, out: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """``(logits [B], named extra losses)``."""
        if isinstance(out, (tuple, list)):
            raise TypeError(
                "the model returned a tuple; pass loss_mode=False for models that return (logits, aux_loss)"
            )
        return out.reshape(-1), {}


class LogitsWithAuxLoss:
    """Output adapter for models that return ``(logits, auxiliary_loss)``, whose auxiliary loss is
    added to the training loss (DIEN; Torch-RecHub's ``loss_mode=False``)."""

    def __call__(self, out: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError("loss_mode=False expects the model to return (logits, auxiliary_loss)")
        return out[0].reshape(-1), {"aux_loss": out[1]}


class CTRTask:
    """Train a model that returns click logits ``[B]``.

    Args:
        loss_mode: Torch-RecHub's switch, mapped once to an output adapter: True when the model
            returns logits only (:class:`LogitsOnly`); False when it returns ``(logits,
            auxiliary_loss)`` and the auxiliary loss is added (:class:`LogitsWithAuxLoss`, DIEN).
        regularization: callable ``model -> penalty`` added to the loss.
    """

    def __init__(self, loss_mode: bool = True, regularization: Callable[[nn.Module], Any] | None = None):
        self.loss_mode = loss_mode
        self.output = LogitsOnly() if loss_mode else LogitsWithAuxLoss()
        self.regularization = regularization
        self.auc = BinaryAUC()
        self.logloss = LogLoss()

    def forward(self, model: nn.Module, x: dict) -> tuple[torch.Tensor, dict[str, Any]]:
        """``(logits [B], named extra losses)`` of the model on ``x``."""
        return self.output(model(x))

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        x, y = split_batch(batch)
        if y is None:
            raise ValueError("training batches must be (x, y) pairs; this one has no labels")
        y = check_binary_labels(y)
        logits, extra = self.forward(model, x)
        if logits.shape != y.shape:
            raise ValueError(f"model returned {tuple(logits.shape)} logits for {tuple(y.shape)} labels")
        loss = F.binary_cross_entropy_with_logits(logits, y)
        parts = {}
        for name, value in extra.items():
            parts[name] = torch.as_tensor(value)
            loss = loss + value
        loss, _ = add_penalty(loss, model, self.regularization, parts)
        return StepOutput(loss, parts, batch_size=len(y))

    def validation_step(self, model: nn.Module, batch: Any) -> None:
        x, y = split_batch(batch)
        y = check_binary_labels(y)
        probs = torch.sigmoid(self.forward(model, x)[0])
        self.auc.update(probs, y)
        self.logloss.update(probs, y)

    @property
    def _metrics(self) -> dict[str, Any]:
        return {"auc": self.auc, "logloss": self.logloss}

    def sync_metrics(self, gather) -> None:
        for metric in self._metrics.values():
            metric.sync(gather)

    def metric_names(self) -> list[str]:
        return list(self._metrics)

    def higher_is_better(self, name: str) -> bool | None:
        metric = self._metrics.get(name)
        return None if metric is None else metric.higher_is_better

    def compute_metrics(self) -> dict[str, float]:
        metrics = {name: metric.compute() for name, metric in self._metrics.items()}
        for metric in self._metrics.values():
            metric.reset()
        return metrics

    @torch.no_grad()
    def predict_step(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, _ = split_batch(batch)
        return torch.sigmoid(self.forward(model, x)[0])
