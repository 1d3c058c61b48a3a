"""CTRTrainer with Torch-RecHub's constructor and methods, on the shared engine."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from trainhub.tasks import CTRTask, Regularization
from trainhub.trainers.base import RecTrainer

__all__ = ["CTRTrainer"]


class CTRTrainer(RecTrainer):
    """Train a CTR ranking model (logits ``[B]``) with BCE-with-logits, early-stopped on validation AUC.

    Args:
        model: a ranking model returning logits ``[B]`` (or ``(logits, aux_loss)`` with ``loss_mode=False``).
        optimizer_fn: optimizer class, built as ``optimizer_fn(model.parameters(), **optimizer_params)``.
        optimizer_params: defaults to ``{"lr": 1e-3, "weight_decay": 1e-5}``.
        regularization_params: ``{"embedding_l1", "embedding_l2", "dense_l1", "dense_l2"}`` penalties.
        scheduler_fn: any ``torch.optim.lr_scheduler`` class, stepped once per epoch
            (``ReduceLROnPlateau`` receives the validation metric).
        scheduler_params: its keyword arguments.
        n_epoch: epochs to train.
        earlystop_patience: epochs without validation-AUC improvement before stopping.
        device: ``"cpu"``, ``"cuda:0"``, ...
        gpus: GPU ids; two or more (with a CUDA ``device``) wrap the model in ``nn.DataParallel``,
            otherwise it trains on ``device`` (Torch-RecHub's rule).
        loss_mode: True if the model returns logits only; False for ``(logits, aux_loss)``.
        model_path: folder for ``model.pth``, ``best.safetensors``, ``last.ckpt`` and logs.
        model_logger: a logger object (or list) with ``log_metrics``/``log_params``/``close``.
        **kwargs: engine options, see :class:`trainhub.trainers.base.RecTrainer`.

    Example:
        >>> trainer = CTRTrainer(model, optimizer_params={"lr": 1e-3, "weight_decay": 1e-5}, n_epoch=5)
        >>> trainer.fit(train_dl, val_dl)
        >>> auc = trainer.evaluate(trainer.model, test_dl)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer_fn=torch.optim.Adam,
        optimizer_params: dict | None = None,
        regularization_params: dict | None = None,
        scheduler_fn=None,
        scheduler_params: dict | None = None,
        n_epoch: int = 10,
        earlystop_patience: int = 10,
        device: str = "cpu",
        gpus: Sequence[int] | None = None,
        loss_mode: bool = True,
        model_path: str = "./",
        model_logger: Any = None,
        **kwargs: Any,
    ):
        self.loss_mode = loss_mode
        self.regularization = Regularization(regularization_params)
        self.task = CTRTask(loss_mode=loss_mode, regularization=self.regularization)
        super().__init__(model, optimizer_fn, optimizer_params, scheduler_fn, scheduler_params, n_epoch,
                         earlystop_patience, device, gpus, model_path, model_logger, **kwargs)
