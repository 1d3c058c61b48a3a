"""How the loop names what it logs, decided once.

A task returns bare metric keys (``auc``, ``eval_loss``); the loop logs them as ``val/<key>``,
training values as ``train/<key>`` and the running loss as ``train/step_loss``. Whoever reads a
logged key back (early stopping, the plateau scheduler, a trainer's history, a logger that
renames keys) goes through :func:`task_key` instead of stripping the prefix itself.

What a logger *writes* is the logger's option: a :class:`KeyStyle` given to
:class:`trainhub.logging.MultiLogger` renames the loop's keys on the way out (the text trainer
writes upstream's ``eval_x`` / ``train_loss`` names with :data:`UPSTREAM_KEYS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

__all__ = ["TRAIN", "VAL", "STEP_LOSS", "EPOCH_LOSS", "logged", "task_key", "KeyStyle", "LOOP_KEYS",
           "UPSTREAM_KEYS"]

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


@dataclass(frozen=True)
class KeyStyle:
    """How a logger names the loop's keys: its prefixes for training and validation values and its
    names for the two losses. Other keys (``learning_rate``, ``epoch``, bare metric keys) pass
    through unchanged."""

    train: str = TRAIN
    val: str = VAL
    step_loss: str = STEP_LOSS
    epoch_loss: str = EPOCH_LOSS

    def rename(self, key: str) -> str:
        if key == STEP_LOSS:
            return self.step_loss
        if key == EPOCH_LOSS:
            return self.epoch_loss
        if key.startswith(VAL):
            return self.val + key[len(VAL):]
        if key.startswith(TRAIN):
            return self.train + key[len(TRAIN):]
        return key

    def apply(self, metrics: Mapping[str, float]) -> dict[str, float]:
        return dict(metrics) if self == LOOP_KEYS else {self.rename(k): v for k, v in metrics.items()}


#: the loop's own keys: ``train/loss``, ``train/step_loss``, ``val/auc``
LOOP_KEYS = KeyStyle()
#: the original multitask_bert's: ``train_epoch_loss``, ``train_loss``, ``eval_<task>_<head>_<metric>``
UPSTREAM_KEYS = KeyStyle(train="train_", val="", step_loss="train_loss", epoch_loss="train_epoch_loss")
