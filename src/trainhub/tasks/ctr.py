"""Binary click-through-rate task: BCE-with-logits loss, AUC and log-loss metrics."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from trainhub.engine.task import StepOutput
from trainhub.metrics import BinaryAUC, LogLoss
from trainhub.tasks.regularization import add_penalty

__all__ = ["CTRTask", "check_binary_labels", "split_batch"]


def split_batch(batch: Any) -> tuple[dict, torch.Tensor | None]:
    """``(x, y)`` -> ``(x, y)``; a bare ``x`` dict -> ``(x, None)``."""
    if isinstance(batch, dict):
        return batch, None
    x, y = batch
    return x, y


def check_binary_labels(y: torch.Tensor, what: str = "label") -> torch.Tensor:
    """Return ``y`` as float ``[B]``; raise when a value is not 0 or 1 (names the value and row)."""
    y = y.reshape(-1).float()
    bad = (y != 0) & (y != 1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{what} must be 0 or 1 for binary classification; found {y[row].item():g} at row {row} of the batch"
        )
    return y


class CTRTask:
    """Train a model that returns click logits ``[B]``.

    Args:
        loss_mode: Torch-RecHub's switch: True when the model returns logits only; False when it
            returns ``(logits, auxiliary_loss)`` and the auxiliary loss is added (DIEN).
        regularization: callable ``model -> penalty`` added to the loss.
    """

    def __init__(self, loss_mode: bool = True, regularization: Callable[[nn.Module], Any] | None = None):
        self.loss_mode = loss_mode
        self.regularization = regularization
        self.auc = BinaryAUC()
        self.logloss = LogLoss()

    def forward(self, model: nn.Module, x: dict) -> tuple[torch.Tensor, torch.Tensor | float]:
        out = model(x)
        if self.loss_mode:
            if isinstance(out, (tuple, list)):
                raise TypeError(
                    "the model returned a tuple; pass loss_mode=False for models that return (logits, aux_loss)"
                )
            return out.reshape(-1), 0.0
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError("loss_mode=False expects the model to return (logits, auxiliary_loss)")
        return out[0].reshape(-1), out[1]

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        x, y = split_batch(batch)
        if y is None:
            raise ValueError("training batches must be (x, y) pairs; this one has no labels")
        y = check_binary_labels(y)
        logits, aux = self.forward(model, x)
        if logits.shape != y.shape:
            raise ValueError(f"model returned {tuple(logits.shape)} logits for {tuple(y.shape)} labels")
        loss = F.binary_cross_entropy_with_logits(logits, y)
        parts = {}
        if not self.loss_mode:
            parts["aux_loss"] = torch.as_tensor(aux)
            loss = loss + aux
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
