"""What every Torch-RecHub-style trainer shares: device, optimizer, scheduler, early stopping,
checkpoints and loggers around the engine's ``fit``. Subclasses only supply a Task."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from trainhub.engine import (
    Checkpointer,
    EarlyStopping,
    FitConfig,
    FitResult,
    Runtime,
    evaluate,
    fit,
    run_folder,
    save_state,
    train_epoch,
    unwrap_model,
)
from trainhub.engine.checkpoint import plain_state_dict
from trainhub.engine.loop import check_monitor
from trainhub.engine.stopping import monitor_mode
from trainhub.engine.task import custom_backward
from trainhub.files import remove_run_files
from trainhub.logging import build_logger
from trainhub.models.summary import model_summary
from trainhub.optim import build_optimizer, rowwise_rule, set_sparse_embeddings
from trainhub.optim.hybrid import check_optimizer_args

__all__ = ["RecTrainer"]

log = logging.getLogger(__name__)

DEFAULT_OPTIMIZER_PARAMS = {"lr": 1e-3, "weight_decay": 1e-5}


class RecTrainer:
    """Shared trainer body. Subclasses set ``self.task`` (before calling this ``__init__``) and the
    early-stopping monitor.

    Beyond Torch-RecHub's parameters every trainer takes, as keywords:
        seed: seed everything before training. The model's initial weights were drawn when it
            was built: call ``trainhub.seed_everything(seed)`` before building it (a warning says
            so when nothing was seeded).
        loggers: extra loggers by name (``"csv"``, ``"tensorboard"``, ``"mlflow"``) or object;
            their files go to ``log_dir`` (default ``<model_path>/logs``).
        earlystop_monitor / earlystop_mode: any validation metric and its direction (by default
            the direction the task declares for that metric; ``"max"`` for one it does not know).
        max_grad_norm: gradient clipping.
        resume: ``True`` continues from ``<model_path>/last.ckpt`` (an error when it is missing),
            ``"auto"`` continues when it exists. Without resume, a run replaces the files an
            earlier run left in ``model_path`` (see ``docs/failures.md``).
        progress: show progress bars.
        precision: ``"32"``, ``"bf16"`` (autocast) or ``"16"`` (CUDA autocast + gradient scaling).
        save_last: write ``last.ckpt`` after every epoch (needed for ``resume``).
        sparse_embeddings: update only the embedding rows each batch touches (default True), with
            the row-wise form of ``optimizer_fn`` (lazy Adam/AdamW, Adagrad, SGD; see
            :mod:`trainhub.optim.rowwise` for where that differs from the dense rule). It turns
            itself off when the optimizer has no row-wise form, for loss weightings that shape
            per-task gradients (GradNorm, MetaBalance), and under ``nn.DataParallel``. False gives
            exact dense updates of every table on every step.
        find_unused_parameters: under torchrun, let DistributedDataParallel tolerate parameters
            that a step does not use (slower; DDP's error names the parameters when needed).
        callbacks: objects with any of the loop's events (``on_validation_end(state, metrics)``
            may add metrics, e.g. retrieval recall, before early stopping reads them).

    Under ``torchrun`` the same script trains on every process: see ``docs/scaling.md``.
    """

    model_filename = "model.pth"
    model_file_pattern = r"model\.pth"  # names of the weights files a run leaves in model_path

    def __init__(
        self,
        model: nn.Module,
        optimizer_fn=torch.optim.Adam,
        optimizer_params: dict | None = None,
        scheduler_fn=None,
        scheduler_params: dict | None = None,
        n_epoch: int = 10,
        earlystop_patience: int = 10,
        device: str = "cpu",
        gpus: Sequence[int] | None = None,
        model_path: str = "./",
        model_logger: Any = None,
        *,
        earlystop_monitor: str = "auc",
        earlystop_mode: str | None = None,
        seed: int | None = None,
        loggers: Iterable[Any] | str | None = None,
        log_dir: str | None = None,
        experiment_name: str = "trainhub",
        max_grad_norm: float | None = None,
        resume: bool = False,
        progress: bool = True,
        save_last: bool = True,
        precision: str = "32",
        sparse_embeddings: bool = True,
        find_unused_parameters: bool = False,
        callbacks: Sequence[Any] = (),
    ):
        run_folder.check_n_epoch(n_epoch)  # before anything is built or written
        run_folder.check_output_dir(model_path)
        run_folder.warn_unseeded_model(type(self).__name__, seed)
        self.runtime = Runtime(device=device, gpus=gpus, seed=seed, find_unused_parameters=find_unused_parameters)
        self.device = self.runtime.device
        check_optimizer_args(optimizer_fn, DEFAULT_OPTIMIZER_PARAMS if optimizer_params is None else optimizer_params)
        self.optimizer_fn = optimizer_fn
        self.optimizer_params = dict(DEFAULT_OPTIMIZER_PARAMS if optimizer_params is None else optimizer_params)
        self.sparse_embeddings = sparse_embeddings and self._row_wise_possible(model)
        set_sparse_embeddings(model, self.sparse_embeddings)  # before DDP wrapping: it must know
        self.model = self.runtime.setup_model(model)
        self.optimizer = self.build_optimizer()
        self.scheduler = scheduler_fn(self.optimizer, **(scheduler_params or {})) if scheduler_fn else None
        self.n_epoch = n_epoch
        self.earlystop_patience = earlystop_patience
        # The direction is the task's declaration for the monitored metric unless given.
        mode = earlystop_mode or monitor_mode(getattr(self, "task", None), earlystop_monitor)
        self.early_stopper = EarlyStopping(earlystop_monitor, mode, patience=earlystop_patience)
        self.model_path = Path(model_path)
        self.checkpointer = Checkpointer(self.model_path, save_last=save_last)
        self.config = FitConfig(max_epochs=n_epoch, max_grad_norm=max_grad_norm, resume=resume, progress=progress,
                                precision=precision)
        extra = model_logger if isinstance(model_logger, list) else [model_logger] if model_logger is not None else []
        names = [loggers] if isinstance(loggers, str) else list(loggers or [])
        self._logger_spec = (["stdout"] + names + list(extra), Path(log_dir) if log_dir else self.model_path / "logs",
                             experiment_name)
        self.logger = None
        self.fit_result: FitResult | None = None
        self.seed = seed
        self.callbacks = list(callbacks)

    # -- pieces subclasses may override -------------------------------------------------------
    def _row_wise_possible(self, model: nn.Module) -> bool:
        """Whether embedding tables can take row-sparse updates in this trainer's setup."""
        if rowwise_rule(self.optimizer_fn, self.optimizer_params) is None:
            log.info("%s has no row-wise form: embedding tables take dense updates",
                     getattr(self.optimizer_fn, "__name__", self.optimizer_fn))
            return False
        if custom_backward(getattr(self, "task", None)) is not None:
            return False  # the strategy computes per-task gradients of every parameter itself
        return not self.runtime.data_parallel  # DataParallel's replicas reduce gradients densely

    def build_optimizer(self) -> torch.optim.Optimizer:
        """``optimizer_fn(model.parameters(), **optimizer_params)``; row-sparse embedding tables get
        its row-wise form (see :func:`trainhub.optim.build_optimizer`)."""
        return build_optimizer(self.model.parameters(), self.optimizer_fn, self.optimizer_params)

    def _get_logger(self):
        if self.logger is None:
            names, log_dir, experiment = self._logger_spec
            if not self.runtime.is_main:
                names = []  # only rank 0 prints and writes logs (files, TensorBoard, MLflow, user loggers)
            run_name = f"{type(unwrap_model(self.model)).__name__}-{self.model_path.resolve().name}"
            self.logger = build_logger(names, save_dir=log_dir, experiment_name=experiment, run_name=run_name)
        return self.logger

    # -- Torch-RecHub API ---------------------------------------------------------------------
    def train_one_epoch(self, data_loader: Iterable, log_interval: int = 10) -> float:
        """Train one epoch; return its mean loss."""
        return self.train_epoch_logs(data_loader, log_interval)["loss"]

    def train_epoch_logs(self, data_loader: Iterable, log_interval: int = 10) -> dict[str, float]:
        """Train one epoch with the trainer's settings; return the mean loss and its named parts."""
        config = dataclasses.replace(self.config, max_epochs=1, log_every_n_steps=log_interval)
        data_loader = self.runtime.distribute_loader(data_loader, train=True)
        self.runtime.setup_optimizer(self.optimizer, self.model)
        logs = train_epoch(self.model, self.task, self.optimizer, data_loader, runtime=self.runtime, config=config)
        return self.runtime.mean_over_ranks(logs)

    def fit(self, train_dataloader: Iterable, val_dataloader: Iterable | None = None) -> FitResult:
        """Train for ``n_epoch`` epochs with early stopping on the validation metric.

        The best validation weights are kept in the model and saved to ``<model_path>/model.pth``
        (and ``best.safetensors``); without validation data the last epoch's weights are saved.

        Under torchrun the loaders are sharded across ranks, validation metrics cover the whole
        validation set on every rank, and only rank 0 writes files and logs.
        """
        if not self.config.resume:
            self.early_stopper.reset()  # a second fit() must not compare against the first one's best
        check_monitor(self.task, self.early_stopper if val_dataloader is not None else None, self.callbacks)
        self._prepare_run_folder()
        logger = self._get_logger()
        try:
            batch_size = getattr(train_dataloader, "batch_size", None)
            logger.log_params({**self.hyperparams(), **({"batch_size": batch_size} if batch_size else {})})
            self.fit_result = fit(
                self.model, self.task, self.optimizer, train_dataloader, val_dataloader,
                config=self.config, scheduler=self.scheduler, runtime=self.runtime, logger=logger,
                stopper=self.early_stopper if val_dataloader is not None else None,
                checkpointer=self.checkpointer, callbacks=self.callbacks,
            )
            if self.runtime.is_main:
                self.save_model()
            self.runtime.barrier()  # model.pth exists for every rank once fit() returns
        finally:
            logger.close()
            self.logger = None
        return self.fit_result

    def _prepare_run_folder(self) -> None:
        """Before any work: a writable ``model_path``, the checkpoint to resume from, and no files
        of an earlier run beside a new one. Rank 0 decides; every rank raises its error."""
        error = None
        if self.runtime.is_main:
            try:
                run_folder.ensure_writable_dir(self.model_path)
                last = self.checkpointer.last_path
                if self.config.resume is True and not last.is_file():
                    raise FileNotFoundError(
                        f"resume=True, but there is no {last} to continue from (a run writes it at the end of every "
                        "epoch). Pass resume=False to start a new run, resume='auto' to continue only when the file "
                        "exists, or the model_path of the run you mean to continue")
                if not (self.config.resume and last.is_file()):
                    pattern = re.compile(self.model_file_pattern)
                    files = sorted(p for p in self.model_path.glob("model*.pth") if pattern.fullmatch(p.name))
                    files += self.checkpointer.run_files()
                    remove_run_files(files + self._own_log_files(), self.model_path)
            except Exception as err:  # noqa: BLE001 - raised on every rank below
                error = err
        error = self.runtime.broadcast_object(error)
        if error is not None:
            raise error

    def _own_log_files(self) -> list[Path]:
        """Files of an earlier run that this trainer's own loggers (by name) would append to. Logger
        objects passed in (``model_logger``, ``loggers=[obj]``) are their owner's: a config run
        opens its CSV logger before training, and its files must survive."""
        names, log_dir, _ = self._logger_spec
        files = run_folder.log_files(log_dir)
        named = {n.strip() for item in names if isinstance(item, str) for n in item.split(",")}
        keep_csv, keep_tb = "csv" not in named, "tensorboard" not in named
        return [f for f in files if not ((keep_csv and f.parent == log_dir) or (keep_tb and f.parent != log_dir))]

    def save_model(self, path: str | Path | None = None) -> Path:
        """Save the model's weights (no ``module.`` prefix) with ``torch.save`` for
        Torch-RecHub-style loading: ``model.load_state_dict(torch.load(path, weights_only=True))``."""
        path = Path(path) if path is not None else self.model_path / self.model_filename
        save_state(path, plain_state_dict(self.model, copy=False), zip_crc32=True)  # a file for any zip reader
        return path

    def evaluate(self, model: nn.Module, data_loader: Iterable) -> Any:
        """Validation metric of the task's early-stopping monitor (AUC for CTR)."""
        metrics = evaluate(model, self.task, data_loader, runtime=self.runtime, progress=self.config.progress)
        return metrics[self.early_stopper.monitor]

    def evaluate_all(self, model: nn.Module, data_loader: Iterable) -> dict[str, float]:
        """Every metric the task computes, e.g. ``{"auc": ..., "logloss": ...}``."""
        return evaluate(model, self.task, data_loader, runtime=self.runtime, progress=self.config.progress)

    @torch.no_grad()
    def predict(self, model: nn.Module, data_loader: Iterable) -> list:
        """Predictions for every row of ``data_loader`` (which may yield ``(x, y)`` or ``x``).

        Under torchrun each rank predicts its block of rows and every rank returns all rows, in
        the loader's order."""
        outputs = self._predict_rows(model, data_loader, self.task.predict_step)
        return outputs.tolist() if outputs is not None else []

    def _predict_rows(self, model: nn.Module, data_loader: Iterable, step) -> torch.Tensor | None:
        """``step(model, batch)`` over this rank's rows, gathered from every rank in row order (CPU)."""
        loader, sharded = self.runtime.shard(data_loader, train=False)
        scoring = self.runtime.eval_model(model)
        was_training = model.training
        scoring.eval()
        try:
            outputs = [step(scoring, self.runtime.to_device(batch)).cpu() for batch in loader]
        finally:
            model.train(was_training)
        local = torch.cat(outputs) if outputs else None
        if self.runtime.is_distributed and sharded:
            parts = [p for p in self.runtime.all_gather_object(local) if p is not None]
            return torch.cat(parts) if parts else None
        return local

    def export_onnx(self, output_path: str | Path, dummy_input: dict | None = None, batch_size: int = 2,
                    seq_length: int = 10, opset_version: int = 14, dynamic_batch: bool = True,
                    device: str | None = None, verbose: bool = False,
                    onnx_export_kwargs: dict | None = None) -> bool:
        """Export the trained model to ONNX (extra: ``onnx``); see :class:`trainhub.export.ONNXExporter`.

        Graph inputs are named after the features the model reads, axis 0 is dynamic, and the
        file is written atomically. Returns True, or raises :class:`trainhub.export.ExportError`
        naming the model and why.

        Example:
            >>> trainer.fit(train_dl, val_dl)
            >>> trainer.export_onnx("deepfm.onnx")
        """
        return self._export_onnx(output_path, None, dummy_input, batch_size, seq_length, opset_version,
                                 dynamic_batch, device, verbose, onnx_export_kwargs)

    def _export_onnx(self, output_path, mode, dummy_input, batch_size, seq_length, opset_version, dynamic_batch,
                     device, verbose, onnx_export_kwargs) -> bool:
        from trainhub.export import ONNXExporter

        exporter = ONNXExporter(unwrap_model(self.model), device=device or "cpu")
        return exporter.export(output_path, mode=mode, dummy_input=dummy_input, batch_size=batch_size,
                               seq_length=seq_length, opset_version=opset_version, dynamic_batch=dynamic_batch,
                               verbose=verbose, onnx_export_kwargs=onnx_export_kwargs)

    def visualization(self, input_data: dict | None = None, batch_size: int = 2, seq_length: int = 10, depth: int = 3,
                      show_shapes: bool = True, expand_nested: bool = True, save_path: str | None = None,
                      graph_name: str = "model", device: str | None = None, dpi: int = 300, **kwargs: Any) -> Any:
        """Draw the model's computation graph (torchview; extra ``visualization``), Torch-RecHub's method.

        Returns torchview's ``ComputationGraph``; ``save_path`` also writes it as an image (needs
        Graphviz's ``dot``). See :func:`trainhub.trainers.visualization.visualize_model`.
        """
        from trainhub.trainers.visualization import visualize_model

        return visualize_model(unwrap_model(self.model), input_data=input_data, batch_size=batch_size,
                               seq_length=seq_length, depth=depth, show_shapes=show_shapes,
                               expand_nested=expand_nested, save_path=save_path, graph_name=graph_name,
                               device=device or "cpu", dpi=dpi, **kwargs)

    def hyperparams(self) -> dict[str, Any]:
        return {
            "model": type(unwrap_model(self.model)).__name__,
            "optimizer": getattr(self.optimizer_fn, "__name__", str(self.optimizer_fn)),
            **{f"optimizer.{k}": v for k, v in self.optimizer_params.items()},
            "scheduler": type(self.scheduler).__name__ if self.scheduler is not None else "none",
            "n_epoch": self.n_epoch,
            "earlystop_patience": self.earlystop_patience,
            "earlystop_monitor": self.early_stopper.monitor,
            "device": str(self.device),
            "sparse_embeddings": self.sparse_embeddings,
            "seed": self.seed,
            **model_summary(self.model),  # parameter count, embedding tables, MLP widths
        }
