"""Regression metrics: mean squared error as a function and as a streaming object."""

from __future__ import annotations

import math

import numpy as np
import torch

from trainhub.metrics.undefined import report_undefined

__all__ = ["mse_score", "MeanSquaredError"]


def mse_score(y_true, y_pred) -> float:
    """Mean squared error (NaN for empty input)."""
    y_true = np.asarray(y_true.detach().cpu() if isinstance(y_true, torch.Tensor) else y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred.detach().cpu() if isinstance(y_pred, torch.Tensor) else y_pred, dtype=np.float64)
    y_true, y_pred = y_true.reshape(-1), y_pred.reshape(-1)
    if len(y_true) != len(y_pred):
        raise ValueError(f"mse_score: {len(y_true)} labels but {len(y_pred)} predictions")
    return float(np.mean((y_true - y_pred) ** 2)) if len(y_true) else math.nan


class MeanSquaredError:
    """Streaming MSE: ``update(pred, true)`` per batch, ``compute()``, ``reset()``; keeps two sums."""

    higher_is_better = False

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sum, self._count = 0.0, 0

    def update(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> None:
        diff = y_pred.detach().reshape(-1).double().cpu() - y_true.detach().reshape(-1).double().cpu()
        self._sum += float((diff * diff).sum())
        self._count += diff.numel()

    def sync(self, gather) -> None:
        """Sum the running totals of every rank (``gather`` as ``Runtime.all_gather_object``)."""
        parts = gather((self._sum, self._count))
        self._sum, self._count = sum(p[0] for p in parts), sum(p[1] for p in parts)

    def compute(self) -> float:
        if not self._count:
            report_undefined("MSE is undefined on no rows")
            return math.nan
        return self._sum / self._count
