"""How the loop names what it logs, decided once.

A task returns bare metric keys (``auc``, ``eval_loss``); the loop logs them as ``val/<key>``,
training values as ``train/<key>`` and the running loss as ``train/step_loss``. Whoever reads a
logged key back (early stopping, the plateau scheduler, a trainer's history, a logger that
renames keys) goes through :func:`task_key` instead of stripping the prefix itself.
"""

from __future__ import annotations

from typing import Mapping

__all__ = ["TRAIN", "VAL", "STEP_LOSS", "EPOCH_LOSS", "logged", "task_key"]

TRAIN = "train/"
VAL = "val/"
#: the running mean of the training loss, logged every ``log_every_n_steps`` optimizer steps
STEP_LOSS = f"{TRAIN}step_loss"
#: the epoch's sample-weighted mean training loss
EPOCH_LOSS = f"{TRAIN}loss"


def logged(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """``metrics`` under the keys the loop logs them with: ``logged(VAL, {"auc": x}) == {"val/auc": x}``."""
    return {f"{prefix}{k}": v for k, v in metrics.items()}


def task_key(key: str) -> str:
    """A monitor as logged (``val/auc``) or as the task returns it (``auc``) -> the task's key."""
    return key.removeprefix(VAL)
