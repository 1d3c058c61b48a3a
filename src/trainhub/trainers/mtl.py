"""MTLTrainer with Torch-RecHub's constructor and methods, on the shared engine."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

from trainhub.engine.keys import TRAIN, VAL
from trainhub.optim import build_optimizer
from trainhub.tasks import MTLTask, Regularization, build_weighting
from trainhub.trainers.base import DEFAULT_OPTIMIZER_PARAMS, RecTrainer

__all__ = ["MTLTrainer"]


class MTLTrainer(RecTrainer):
    """Train a multi-task model (logits ``[B, n_task]``) on labels ``[B, n_task]``.

    Args:
        model: a multi-task model (see :mod:`trainhub.models.multitask`).
        task_types: ``"classification"`` (BCE-with-logits, AUC) or ``"regression"`` (MSE, MSE) per
            output column. ESMM has three columns ``[cvr, ctr, ctcvr]``.
        optimizer_fn: optimizer class, built over the model's parameters (plus UWL's log-variances,
            without weight decay).
        optimizer_params: defaults to ``{"lr": 1e-3, "weight_decay": 1e-5}``.
        regularization_params: ``{"embedding_l1", "embedding_l2", "dense_l1", "dense_l2"}`` penalties.
        scheduler_fn: any ``torch.optim.lr_scheduler`` class, stepped once per epoch.
        scheduler_params: its keyword arguments.
        adaptive_params: loss weighting: ``None`` (mean of the task losses), ``{"method": "uwl"}``,
            ``{"method": "metabalance", "relax_factor": 0.7, "beta": 0.9}`` or
            ``{"method": "gradnorm", "alpha": 0.16, "lr": <optimizer lr>}``; or a
            :class:`trainhub.tasks.LossWeighting` object.
        n_epoch: epochs to train.
        earlystop_taskid: the task whose validation metric drives early stopping and the best weights.
        earlystop_patience: epochs without improvement before stopping.
        device: ``"cpu"``, ``"cuda:0"``, ...
        gpus: GPU ids; two or more (with a CUDA ``device``) wrap the model in ``nn.DataParallel``,
            otherwise it trains on ``device`` (Torch-RecHub's rule).
        model_path: folder for ``model_{mode}_{seed}.pth``, ``best.safetensors``, ``last.ckpt`` and logs.
        model_logger: a logger object (or list) with ``log_metrics``/``log_params``/``close``.
        earlystop_mode: ``"max"``/``"min"``; by default it follows the type of task
            ``earlystop_taskid`` (AUC up for classification, MSE down for regression).
        **kwargs: engine options, see :class:`trainhub.trainers.base.RecTrainer`.

    Example:
        >>> trainer = MTLTrainer(model, ["classification", "classification"],
        ...                      adaptive_params={"method": "gradnorm", "alpha": 0.16}, n_epoch=5)
        >>> log = trainer.fit(train_dl, val_dl, seed=0)   # saves model_base_0.pth (best weights)
        >>> income_auc, marital_auc = trainer.evaluate(trainer.model, test_dl)
    """

    def __init__(
        self,
        model: nn.Module,
        task_types: Sequence[str],
        optimizer_fn=torch.optim.Adam,
        optimizer_params: dict | None = None,
        regularization_params: dict | None = None,
        scheduler_fn=None,
        scheduler_params: dict | None = None,
        adaptive_params: dict | None = None,
        n_epoch: int = 10,
        earlystop_taskid: int = 0,
        earlystop_patience: int = 10,
        device: str = "cpu",
        gpus: Sequence[int] | None = None,
        model_path: str = "./",
        model_logger: Any = None,
        earlystop_mode: str | None = None,
        **kwargs: Any,
    ):
        self.task_types = list(task_types)
        self.regularization = Regularization(regularization_params)
        self.task = MTLTask(self.task_types, regularization=self.regularization)
        if not 0 <= earlystop_taskid < self.task.num_tasks:
            raise ValueError(f"earlystop_taskid {earlystop_taskid} is not a task index (0..{self.task.num_tasks - 1})")
        self.earlystop_taskid = earlystop_taskid
        kwargs.setdefault("earlystop_monitor", self.task.metric_name(earlystop_taskid))
        kwargs["earlystop_mode"] = earlystop_mode  # None: the task's declaration (AUC up, MSE down)
        lr = (optimizer_params if optimizer_params is not None else DEFAULT_OPTIMIZER_PARAMS).get("lr")
        self.adaptive_params = adaptive_params
        self.weighting = build_weighting(adaptive_params, default_lr=lr)
        self.task.weighting = self.weighting
        self.model_filename = "model_base_0.pth"
        self.model_file_pattern = r"model_[A-Za-z0-9]+_\d+\.pth"  # model_{mode}_{seed}.pth of any earlier run
        super().__init__(model, optimizer_fn, optimizer_params, scheduler_fn, scheduler_params, n_epoch,
                         earlystop_patience, device, gpus, model_path, model_logger, **kwargs)

    def build_optimizer(self) -> torch.optim.Optimizer:
        # Called by RecTrainer once the model sits on its device: bind the strategy to it first,
        # so its parameters and state are created there and it sees the placed parameters.
        self.task.bind(self.model)
        self.weighting.to(self.device)
        extra = self.weighting.optimized_parameters()
        if not extra:
            return build_optimizer(self.model.parameters(), self.optimizer_fn, self.optimizer_params)
        groups = [{"params": list(self.model.parameters())}, {"params": extra, "weight_decay": 0.0}]
        return build_optimizer(groups, self.optimizer_fn, self.optimizer_params)

    # -- Torch-RecHub API ---------------------------------------------------------------------
    def train_one_epoch(self, data_loader: Iterable, log_interval: int = 10) -> list[float]:
        """Train one epoch; return each task's mean training loss (in task order)."""
        logs = self.train_epoch_logs(data_loader, log_interval)
        return [logs[f"{n}_loss"] for n in self.task.task_names]

    def fit(self, train_dataloader: Iterable, val_dataloader: Iterable | None = None, mode: str = "base",
            seed: int = 0) -> list[list[float]]:
        """Train with early stopping on task ``earlystop_taskid``; keep and save the best weights.

        ``seed`` seeds Python, NumPy and torch before training (dropout, shuffling with an unseeded
        loader); the model's initial weights were drawn when it was built, so seed before building
        it too for a fully reproducible run. The best weights go to ``model_path/model_{mode}_{seed}.pth``.

        Returns:
            Torch-RecHub's per-epoch log: ``[train_loss_0, ..., train_loss_{n-1}, val_score_0, ...,
            val_score_{n-1}]`` per epoch (no scores without validation data). The full
            per-epoch dicts are in ``self.fit_result.history``.
        """
        self.runtime.seed_process(seed)
        self.model_filename = f"model_{mode}_{seed}.pth"
        result = super().fit(train_dataloader, val_dataloader)
        losses = [f"{TRAIN}{n}_loss" for n in self.task.task_names]
        metrics = [f"{VAL}{self.task.metric_name(i)}" for i in range(self.task.num_tasks)]
        return [[h[k] for k in losses] + [h[m] for m in metrics if m in h] for h in result.history]

    def evaluate(self, model: nn.Module, data_loader: Iterable) -> list[float]:
        """One validation score per task, in task order: AUC (classification) or MSE (regression)."""
        metrics = self.evaluate_all(model, data_loader)
        return [metrics[self.task.metric_name(i)] for i in range(self.task.num_tasks)]

    def predict(self, model: nn.Module, data_loader: Iterable) -> list[list[float]]:
        """``[N][n_task]`` predictions (probabilities for classification, raw for regression).
        The loader may yield ``(x, y)`` or ``x`` alone."""
        return super().predict(model, data_loader)

    def hyperparams(self) -> dict[str, Any]:
        params = super().hyperparams()
        params.update({"task_types": ",".join(self.task_types), "loss_weighting": self.weighting.method,
                       "earlystop_taskid": self.earlystop_taskid,
                       "model_outputs_supervised": ",".join(map(str, self.task.supervised or []))})
        return params
