"""The RQ-VAE trainer with Torch-RecHub's constructor and methods, on the shared engine.

Torch-RecHub 0.9.0 path: ``torch_rechub.trainers.rqvae_trainer.Trainer`` (also importable here as
:mod:`trainhub.trainers.rqvae_trainer`).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterable

import torch
from torch import nn

from trainhub.engine import evaluate
from trainhub.engine.keys import EPOCH_LOSS, VAL
from trainhub.tasks.rqvae import RQVAETask
from trainhub.trainers.base import RecTrainer

__all__ = ["RQVAETrainer"]

log = logging.getLogger(__name__)

BEST_LOSS_FILE = "model_best_loss.pth"
BEST_COLLISION_FILE = "model_best_collision_rate.pth"


class _BestLossWeights:
    """Callback: at every epoch that validated, save the weights when the epoch's training loss is
    the lowest so far (upstream's ``model_best_loss.pth``)."""

    def __init__(self, trainer: "RQVAETrainer"):
        self.trainer = trainer
        self.best = math.inf

    def on_fit_start(self, state: Any) -> None:
        self.best = math.inf

    def on_epoch_end(self, state: Any, logs: dict[str, float]) -> None:
        if f"{VAL}collision_rate" not in logs:
            return  # upstream compares losses only at evaluation epochs
        loss = logs[EPOCH_LOSS]
        if loss < self.best:
            self.best = loss
            if self.trainer.runtime.is_main:
                self.trainer.save_model(self.trainer.model_path / BEST_LOSS_FILE)


class RQVAETrainer(RecTrainer):
    """Train an :class:`~trainhub.models.generative.RQVAEModel` on item embeddings.

    Every ``eval_step`` epochs the semantic IDs of the validation items (by default the training
    items, as upstream) are checked for collisions; the weights with the lowest collision rate go
    to ``<model_path>/model_best_collision_rate.pth`` (and stay in the model after ``fit``), those
    with the lowest training loss at an evaluation epoch to ``model_best_loss.pth``.

    Args:
        model: an ``RQVAEModel``.
        optimizer_fn / optimizer_params: optimizer class and its arguments (default
            ``{"lr": 1e-3, "weight_decay": 1e-5}``).
        scheduler_fn / scheduler_params: an LR scheduler, stepped once per epoch (upstream built
            it but never stepped it).
        n_epoch: epochs to train.
        device: ``"cpu"``, ``"cuda:0"``, ...
        model_path: folder for the two weight files, ``best.safetensors``, ``last.ckpt`` and logs.
        model_logger: a logger object (or list) with ``log_metrics`` / ``log_params`` / ``close``.
        eval_step: validate every ``eval_step`` epochs. When ``eval_step > n_epoch`` the last
            epoch is validated (upstream then validated nothing and wrote no weights).
        earlystop_patience: evaluations without a lower collision rate before stopping; default
            never (upstream does not stop early).
        **kwargs: engine options, see :class:`trainhub.trainers.base.RecTrainer` (seed, resume,
            loggers, max_grad_norm, precision, ...).

    Validation metrics: ``collision_rate``, ``loss``, ``recon_loss``, ``quant_loss``, ``usage_<i>``
    and ``perplexity_<i>`` per level (see :class:`trainhub.tasks.RQVAETask`).

    Example:
        >>> data = EmbDataset("item_embeddings.npy")
        >>> model = RQVAEModel(in_dim=data.dim, num_emb_list=[256, 256, 256], e_dim=32, layers=[512, 256, 128],
        ...                    kmeans_init=True)
        >>> trainer = Trainer(model, optimizer_params={"lr": 1e-3, "weight_decay": 1e-5}, n_epoch=500, eval_step=50)
        >>> best_loss, best_collision_rate = trainer.fit(DataLoader(data, batch_size=1024, shuffle=True))
        >>> ids = model.generate_semantic_ids(data, DataLoader(data, batch_size=1024))
    """

    model_filename = BEST_COLLISION_FILE
    model_file_pattern = r"model_best_(loss|collision_rate)\.pth"

    def __init__(self, model: nn.Module, optimizer_fn=torch.optim.Adam, optimizer_params: dict | None = None,
                 scheduler_fn=None, scheduler_params: dict | None = None, n_epoch: int = 10, device: str = "cpu",
                 model_path: str = "./", model_logger: Any = None, eval_step: int = 50,
                 earlystop_patience: int | None = None, **kwargs: Any):
        if eval_step < 1:
            raise ValueError(f"eval_step must be >= 1, got {eval_step}")
        self.task = RQVAETask(getattr(model, "num_emb_list", None))
        self.eval_step = eval_step
        kwargs.setdefault("earlystop_monitor", "collision_rate")
        self._best_loss = _BestLossWeights(self)
        kwargs["callbacks"] = [*kwargs.get("callbacks", ()), self._best_loss]
        patience = n_epoch + 1 if earlystop_patience is None else earlystop_patience
        super().__init__(model, optimizer_fn, optimizer_params, scheduler_fn, scheduler_params, n_epoch, patience,
                         device, None, model_path, model_logger, **kwargs)
        self.config.eval_every_n_epochs = min(eval_step, n_epoch)

    @property
    def best_loss(self) -> float:
        """Lowest training loss (epoch mean) at an evaluation epoch; ``inf`` before any."""
        return self._best_loss.best

    @property
    def best_collision_rate(self) -> float:
        """Lowest validation collision rate; ``inf`` before any."""
        best = self.early_stopper.best if self.early_stopper.monitor == "collision_rate" else None
        return math.inf if best is None else float(best)

    def fit(self, train_dataloader: Iterable, val_dataloader: Iterable | None = None) -> tuple[float, float]:
        """Train; return ``(best_loss, best_collision_rate)`` as upstream.

        ``val_dataloader`` defaults to ``train_dataloader`` (collisions among the training items).
        The loss is the epoch's mean per batch row (upstream returned the sum over batches).
        """
        super().fit(train_dataloader, train_dataloader if val_dataloader is None else val_dataloader)
        return self.best_loss, self.best_collision_rate

    def train_one_epoch(self, data_loader: Iterable, log_interval: int = 10) -> tuple[float, float]:
        """Train one epoch; return its mean ``(loss, recon_loss)`` (upstream: sums over batches)."""
        logs = self.train_epoch_logs(data_loader, log_interval)
        return logs["loss"], logs["recon_loss"]

    def evaluate(self, data_loader: Any, model: Any = None) -> float:
        """Collision rate of the semantic IDs of ``data_loader``'s items (upstream:
        ``evaluate(data_loader)``; trainhub's ``evaluate(model, data_loader)`` order works too)."""
        if isinstance(data_loader, nn.Module):
            data_loader, model = model, data_loader
        metrics = evaluate(model if model is not None else self.model, self.task, data_loader, runtime=self.runtime,
                           progress=self.config.progress)
        return metrics["collision_rate"]

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "eval_step": self.eval_step}
