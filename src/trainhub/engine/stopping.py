"""Early stopping on any logged metric, in either direction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trainhub.engine.keys import task_key
from trainhub.engine.task import DirectedMetrics

__all__ = ["EarlyStopping", "monitor_mode"]


def monitor_mode(task: Any, monitor: str, default: str = "max") -> str:
    """``"max"`` or ``"min"`` for ``monitor``, as the task that defines the metric declares it
    (:class:`~trainhub.engine.task.DirectedMetrics`); ``default`` for a metric it does not know
    (e.g. one a callback adds)."""
    higher = task.higher_is_better(task_key(monitor)) if isinstance(task, DirectedMetrics) else None
    if higher is None:
        return default
    return "max" if higher else "min"


@dataclass
class EarlyStopping:
    """Stop after ``patience`` evaluations without improvement of ``monitor``.

    Args:
        monitor: metric key as returned by the task, e.g. ``"auc"`` or ``"loss"``.
        mode: ``"max"`` when higher is better, ``"min"`` when lower is better; None takes the
            direction the task declares for ``monitor`` (see :func:`monitor_mode`), which
            :func:`trainhub.engine.fit` fills in before training (``"max"`` until then).
        patience: evaluations without improvement before stopping (Torch-RecHub's count: with
            patience 2 and the best at epoch 0, training stops after epoch 2).
        min_delta: an improvement must beat the best by more than this.

    NaN (a metric that could not be computed) never counts as an improvement and does not use up
    patience either. ``state_dict()`` / ``load_state_dict()`` make it resumable.
    """

    monitor: str
    mode: str | None = "max"
    patience: int = 10
    min_delta: float = 0.0
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min", None):
            raise ValueError(f"EarlyStopping mode must be 'max' or 'min', got {self.mode!r}")
        if self.patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1, got {self.patience}")

    def improved(self, value: float) -> bool:
        if value is None or math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode != "min":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def follow(self, task: Any) -> None:
        """Take the direction ``task`` declares for the monitor when none was given."""
        if self.mode is None:
            self.mode = monitor_mode(task, self.monitor)

    def value(self, metrics: dict[str, float]) -> float:
        """The monitored value among ``metrics`` (the task's keys, or the logged ``val/`` ones)."""
        key = self.monitor if self.monitor in metrics else task_key(self.monitor)
        if key not in metrics:
            raise KeyError(f"early stopping monitors {self.monitor!r}, but the metrics are {sorted(metrics)}")
        return float(metrics[key])

    def update(self, metrics: dict[str, float], step: int) -> bool:
        """Record one evaluation; return True when it is the best so far."""
        value = self.value(metrics)
        if math.isnan(value):
            return False  # undefined (e.g. AUC of one class): neither better nor worse, patience is kept
        if self.improved(value):
            self.best, self.best_step, self.bad_evals = value, step, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_evals >= self.patience

    def reset(self) -> None:
        """Forget every evaluation (a new training run)."""
        self.best, self.best_step, self.bad_evals = None, None, 0

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step, self.bad_evals = state["best"], state["best_step"], state["bad_evals"]
