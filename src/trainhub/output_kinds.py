"""What one output column of a recommendation model is: a classification logit or a regression value.

Multi-task models, the multi-task task and its trainer take Torch-RecHub's ``task_types`` strings
(``"classification"`` / ``"regression"``); :func:`output_kinds` turns them into these objects once,
and from then on the kind decides the loss, the prediction, the validation metric and its name,
the label check and the uncertainty-weighting scale, so nothing branches on the string again.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from trainhub.metrics import BinaryAUC, MeanSquaredError

__all__ = ["OutputKind", "Classification", "Regression", "OUTPUT_KINDS", "output_kinds", "check_binary_labels"]


def check_binary_labels(y: torch.Tensor, what: str = "label", *, message: str | None = None) -> torch.Tensor:
    """Return ``y`` as float ``[B]``; raise when a value is not 0 or 1 (names the value and row).

    ``message`` replaces the start of the error (``"<what> must be 0 or 1 for binary classification"``).
    """
    y = y.reshape(-1).float()
    bad = (y != 0) & (y != 1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        start = message or f"{what} must be 0 or 1 for binary classification"
        raise ValueError(f"{start}; found {y[row].item():g} at row {row} of the batch")
    return y


class OutputKind:
    """Base of the two kinds of output column.

    Attributes:
        name: Torch-RecHub's ``task_types`` entry.
        metric: the validation metric's name (``<task>_<metric>`` in the logs).
        uncertainty_scale: the factor of ``exp(-s) * L`` in uncertainty weighting (Kendall et al.).
    """

    name = ""
    metric = ""
    uncertainty_scale = 1.0

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        """What users get from ``predict``: probabilities or raw values."""
        raise NotImplementedError

    def new_metric(self) -> Any:
        """A fresh streaming metric (``update(pred, true)``, ``compute()``, ``higher_is_better``)."""
        raise NotImplementedError

    def check_labels(self, target: torch.Tensor, task_name: str) -> None:
        """Raise when a label column cannot be this kind's target."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Classification(OutputKind):
    """A binary logit: BCE-with-logits, sigmoid probabilities, AUC; labels 0 or 1."""

    name = "classification"
    metric = "auc"

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output, target)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output)

    def new_metric(self) -> Any:
        return BinaryAUC()

    def check_labels(self, target: torch.Tensor, task_name: str) -> None:
        check_binary_labels(target, message=f"{task_name} is a classification task, so its labels must be 0 or 1")


class Regression(OutputKind):
    """A real value: mean squared error as loss and metric; raw predictions."""

    name = "regression"
    metric = "mse"
    uncertainty_scale = 0.5  # Gaussian likelihood: 0.5 * exp(-s) * L

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def new_metric(self) -> Any:
        return MeanSquaredError()


OUTPUT_KINDS: dict[str, OutputKind] = {k.name: k for k in (Classification(), Regression())}


def output_kinds(task_types: Sequence[str]) -> list[OutputKind]:
    """The kind of every entry of ``task_types``, or an error naming the bad entry."""
    task_types = list(task_types)
    if not task_types:
        raise ValueError("task_types is empty; give one of 'classification'/'regression' per task")
    for i, t in enumerate(task_types):
        if t not in OUTPUT_KINDS:
            raise ValueError(f"task_types[{i}] is {t!r}; each entry must be 'classification' or 'regression'")
    return [OUTPUT_KINDS[t] for t in task_types]
