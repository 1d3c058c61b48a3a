"""Config-driven multi-task transformer training: upstream ``multitask_bert`` Trainer API on the engine.

Example:
    >>> trainer = Trainer.from_config("examples/text/demo.yaml")
    >>> try:
    ...     trainer.train()                      # best weights restored at the end
    ...     print(trainer.evaluate(test=True))   # {"eval_Sentiment_sentiment_head_f1": ..., ...}
    ... finally:
    ...     trainer.close()
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from trainhub.engine import EarlyStopping, FitConfig, FitResult, Runtime, evaluate, fit, seed_everything
from trainhub.engine.keys import UPSTREAM_KEYS
from trainhub.engine.run_folder import check_output_dir, ensure_writable_dir
from trainhub.files import remove_run_files
from trainhub.logging import MultiLogger, flatten_params
from trainhub.text.bucketing import LengthGroupedBatchSampler, RandomBatchSampler
from trainhub.text.checkpoint import TextCheckpointer
from trainhub.text.config import ExperimentConfig, load_experiment_config, save_experiment_config, save_label_maps
from trainhub.text.objective import MultiTaskObjective, expected_metric_keys
from trainhub.text.processing import DataProcessor, TaskCollator
from trainhub.text.sampling import MultiTaskLoader, SequentialTaskLoader

__all__ = ["Trainer", "linear_warmup_schedule"]

log = logging.getLogger(__name__)


def linear_warmup_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """LR rises linearly from 0 over ``warmup_steps``, then falls linearly to 0 at ``total_steps``
    (the same shape as ``transformers.get_linear_schedule_with_warmup``)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return float(step) / float(max(1, warmup_steps))
        return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup_steps)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Trainer:
    """Train one shared encoder on several tasks.

    Args:
        config: the experiment config (tasks must have label counts, as ``DataProcessor`` fills in).
        model: a :class:`~trainhub.text.model.MultiTaskModel`.
        tokenizer: its tokenizer (saved with the best checkpoint; gives the pad id).
        train_datasets / eval_datasets: ``{task_name: dataset}`` of encoded rows.
        test_datasets: optional, for ``evaluate(test=True)``.
        callbacks: objects with any of the engine loop's events (``on_epoch_end(state, logs)``,
            ``on_validation_end(state, metrics)``, ...; see :mod:`trainhub.engine.callbacks`).

    Under ``torchrun`` the per-task loaders are sharded across ranks (training shards of equal
    length, evaluation shards covering each row once), metrics cover every rank's rows and are
    identical everywhere, and only rank 0 writes logs, configs and checkpoints.

    Attributes:
        train_dataloaders / eval_dataloaders / test_dataloaders: ``{task_name: DataLoader}``
            (this rank's shards under torchrun).
        logger: the metric logger (None without ``training.logging``).
        fit_result: what the last ``train()`` returned.
    """

    def __init__(self, config: ExperimentConfig, model: Any, tokenizer: Any, train_datasets: dict[str, Any],
                 eval_datasets: dict[str, Any], test_datasets: dict[str, Any] | None = None, *,
                 callbacks: Sequence[Any] = ()):
        self.config = config
        self.callbacks = list(callbacks)
        self.training = config.training
        check_output_dir(self.training.output_dir, "training.output_dir")  # before the loggers write there
        # Each batch trains one task's heads only: DDP must not wait for the other heads' gradients.
        self.runtime = Runtime(device=self.training.resolved_device(), find_unused_parameters=True)
        self.device = self.runtime.device
        self.model = self.runtime.setup_model(model)
        self.tokenizer = tokenizer
        self.task_map = {task.name: i for i, task in enumerate(config.tasks)}
        self.train_dataloaders = self._create_dataloaders(train_datasets, is_eval=False)
        self.eval_dataloaders = self._create_dataloaders(eval_datasets, is_eval=True)
        self.test_dataloaders = self._create_dataloaders(test_datasets or {}, is_eval=True)
        # Eval/test labels the heads have no class for (one id assignment per task for both splits).
        held_out = {**(test_datasets or {}), **eval_datasets}
        extra = {name: ds.extra_labels for name, ds in held_out.items() if getattr(ds, "extra_labels", None)}
        self.objective = MultiTaskObjective(config.tasks, extra_labels=extra)
        self.output_dir = Path(self.training.output_dir)
        self.fit_result: FitResult | None = None
        self._closed = False
        self.logger: MultiLogger | None = None
        if self.eval_dataloaders and self.training.eval_strategy != "no":
            self._check_monitor()  # before the loggers write anything
        self._init_logger()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: str | Path | ExperimentConfig, overrides: Sequence[str] = (), *,
                    callbacks: Sequence[Any] = ()) -> "Trainer":
        """Build tokenizer, datasets (labels discovered) and model from a YAML path or config.

        Args:
            config: YAML path or :class:`ExperimentConfig`.
            overrides: ``key.sub=value`` strings applied before validation.
            callbacks: passed to the trainer (see the class).
        """
        from trainhub.text.model import MultiTaskModel, load_tokenizer

        cfg = load_experiment_config(config, overrides)
        seed_everything(cfg.training.seed)
        tokenizer = load_tokenizer(cfg.model.base_model)
        cfg.tokenizer.pad_token_id = tokenizer.pad_token_id
        processor = DataProcessor(cfg, tokenizer)
        train, evals, cfg = processor.process()
        model = MultiTaskModel(model_config=cfg.model, task_configs=cfg.tasks)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
        return cls(cfg, model, tokenizer, train, evals, test_datasets=processor.test_datasets, callbacks=callbacks)

    def _pad_id(self) -> int:
        pad = self.config.tokenizer.pad_token_id
        if pad is None:
            pad = getattr(self.tokenizer, "pad_token_id", None)
        return int(pad) if isinstance(pad, int) else 0

    def _create_dataloaders(self, datasets: dict[str, Any], is_eval: bool) -> dict[str, DataLoader]:
        """One loader per task, with the task's collate (train loaders shuffle per seed and epoch)."""
        loaders = {}
        pad_to = self.config.tokenizer.max_length if self.config.tokenizer.padding == "max_length" else None
        for name, dataset in datasets.items():
            if name not in self.task_map:
                raise KeyError(f"dataset for unknown task {name!r}; tasks are {list(self.task_map)}")
            if len(dataset) == 0:
                continue
            task = self.config.tasks[self.task_map[name]]
            size = self.training.batch_size_for(name)
            if is_eval and self.training.eval_batch_size:
                size = self.training.eval_batch_size
            collate = TaskCollator(task.type, self._pad_id(), pad_to)
            if is_eval:
                loader = DataLoader(dataset, batch_size=size, shuffle=False, collate_fn=collate)
                loaders[name] = self.runtime.distribute_loader(loader, train=False)
            else:
                # The batch sampler deals each rank its own share of the epoch's batches itself.
                loaders[name] = DataLoader(dataset, batch_sampler=self._batch_sampler(dataset, size, name),
                                           collate_fn=collate)
        return loaders

    def _batch_sampler(self, dataset: Any, batch_size: int, task_name: str):
        """Training batch order, a function of (seed, task, epoch): random, or grouped by length."""
        seed = self.training.seed + self.task_map[task_name]
        if self.training.group_by_length:
            lengths = [len(dataset[i]["input_ids"]) for i in range(len(dataset))]
            return LengthGroupedBatchSampler(lengths, batch_size, seed, self.training.group_by_length_pool,
                                             **self._rank_share())
        return RandomBatchSampler(len(dataset), batch_size, seed, **self._rank_share())

    def _rank_share(self) -> dict[str, int]:
        return {"rank": self.runtime.rank, "world_size": self.runtime.world_size}

    def _init_logger(self) -> None:
        """MLflow (``set_experiment`` + ``start_run``, embedded SQLite store in ``<output_dir>/logs``
        by default) and/or TensorBoard (``<output_dir>/logs/<experiment_name>``)."""
        settings = self.training.logging
        if settings is None or not settings.services or not self.runtime.is_main:
            return
        loggers = []
        log_dir = self.output_dir / "logs"
        try:
            for service in settings.services:
                if service == "mlflow":
                    from trainhub.logging.mlflow import MLflowLogger

                    loggers.append(MLflowLogger(log_dir, experiment_name=settings.experiment_name,
                                                run_name=self.config.project_name, tracking_uri=settings.tracking_uri))
                else:
                    from trainhub.logging.tensorboard import TensorBoardLogger

                    loggers.append(TensorBoardLogger(log_dir / settings.experiment_name))
        except Exception:
            MultiLogger(loggers).close()  # do not leave a started MLflow run behind
            raise
        # upstream's names: eval_<task>_<head>_<metric>, train_loss, train_epoch_loss
        self.logger = MultiLogger(loggers, key_style=UPSTREAM_KEYS)
        params = self.config.to_dict()
        params["tasks"] = {t["name"]: t for t in params["tasks"]}
        self.logger.log_params(flatten_params(params))

    # ------------------------------------------------------------------ optimisation
    def _create_optimizer_and_scheduler(self, num_training_steps: int):
        """AdamW (no weight decay on biases and LayerNorm weights) and linear warmup/decay."""
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim < 2 or "LayerNorm" in name or name.endswith("bias") else decay).append(param)
        groups = [{"params": decay, "weight_decay": self.training.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=self.training.learning_rate)
        warmup = self.training.warmup_for(num_training_steps)
        return optimizer, linear_warmup_schedule(optimizer, warmup, num_training_steps)

    def _log_metrics(self, metrics: dict[str, float], step: int, prefix: str = "") -> None:
        if self.logger is not None and not self._closed:
            self.logger.log_metrics({f"{prefix}{k}": float(v) for k, v in metrics.items()}, step)

    def _check_monitor(self) -> None:
        keys = expected_metric_keys(self.config.tasks)
        if self.training.metric_for_best_model not in keys:
            raise ValueError(f"training.metric_for_best_model {self.training.metric_for_best_model!r} is not a "
                             f"metric this run produces; choose one of {keys}")

    def _checkpointer(self) -> TextCheckpointer | None:
        """Best model folder and ``last.ckpt`` (none with ``save_strategy: no``)."""
        if self.training.save_strategy == "no":
            return None
        return TextCheckpointer(self.output_dir, self.config, self.tokenizer,
                                save_last=self.training.save_strategy in ("epoch", "steps"))

    def _prepare_run_folder(self) -> None:
        """A writable ``output_dir``, the checkpoint a resume needs, and for a new run no files of
        an earlier one (best model, ``last.ckpt``, ``final_model``, TensorBoard events)."""
        tr = self.training
        error = None
        if self.runtime.is_main:
            try:
                ensure_writable_dir(self.output_dir, "training.output_dir")
                last = self.output_dir / "last.ckpt"
                if tr.resume and tr.save_strategy not in ("epoch", "steps"):
                    raise ValueError(f"training.resume needs last.ckpt, which save_strategy {tr.save_strategy!r} "
                                     "does not write; set save_strategy: epoch")
                if tr.resume is True and not last.is_file():
                    raise FileNotFoundError(
                        f"training.resume is true, but there is no {last} to continue from (a run writes it at the "
                        "end of every epoch). Set training.resume: false to start a new run, 'auto' to continue "
                        "only when the file exists, or output_dir to the folder of the run to continue")
                if not (tr.resume and last.is_file()):
                    stale = TextCheckpointer(self.output_dir, self.config, self.tokenizer).run_files()
                    if self.logger is not None:
                        stale += self.logger.stale_files() if hasattr(self.logger, "stale_files") else []
                    remove_run_files(stale, self.output_dir)
            except Exception as err:  # noqa: BLE001 - raised on every rank below
                error = err
        error = self.runtime.broadcast_object(error)
        if error is not None:
            raise error

    # ------------------------------------------------------------------ public API
    def train(self) -> FitResult:
        """Train for ``num_epochs`` with the configured task sampling, evaluating every epoch (or
        every ``eval_steps``), keeping the best checkpoint by ``metric_for_best_model`` and
        stopping early after ``early_stopping_patience`` evaluations without improvement."""
        if not self.train_dataloaders:
            raise ValueError("no training data: every task's training dataset is empty")
        tr = self.training
        seed_everything(tr.seed)
        train_loader = MultiTaskLoader(self.train_dataloaders, tr.task_sampling, tr.sampling_temperature, tr.seed)
        validate = bool(self.eval_dataloaders) and tr.eval_strategy != "no"
        val_loader = SequentialTaskLoader(self.eval_dataloaders) if validate else None
        if val_loader is not None:
            self._check_monitor()
        self._prepare_run_folder()  # before anything is written
        steps_per_epoch = math.ceil(len(train_loader) / tr.gradient_accumulation_steps)
        optimizer, scheduler = self._create_optimizer_and_scheduler(steps_per_epoch * tr.num_epochs)
        eval_steps = (tr.eval_steps or 500) if (tr.eval_strategy == "steps" or tr.eval_steps) else None
        fit_config = FitConfig(
            max_epochs=tr.num_epochs, grad_accum_steps=tr.gradient_accumulation_steps,
            max_grad_norm=tr.max_grad_norm, scheduler_interval="step", eval_every_n_steps=eval_steps,
            log_every_n_steps=tr.logging_steps, restore_best=tr.load_best_model_at_end, progress=tr.progress,
            resume=tr.resume,
        )
        stopper = None
        if val_loader is not None:
            # Without patience there is no stopping, but the best checkpoint is still kept (upstream
            # saved a best model only when a patience was set).
            patience = tr.early_stopping_patience or 10**9
            # greater_is_better overrides; otherwise the objective declares the metric's direction.
            mode = tr.metric_mode() if tr.greater_is_better is not None else None
            stopper = EarlyStopping(tr.metric_for_best_model, mode, patience=patience)
        checkpointer = self._checkpointer()
        if self.runtime.is_main:
            save_experiment_config(self.config, self.output_dir / "experiment_config.yaml")
            save_label_maps(self.config, self.output_dir / "label_maps.json")
        self.fit_result = fit(
            self.model, self.objective, optimizer, train_loader, val_loader, config=fit_config, scheduler=scheduler,
            runtime=self.runtime, logger=self.logger,
            stopper=stopper, checkpointer=checkpointer, callbacks=self.callbacks,
        )
        if self.logger is not None:
            self.logger.log_artifact(str(self.output_dir / "experiment_config.yaml"))
            if checkpointer is not None and checkpointer.has_best():
                self.logger.log_artifact(str(checkpointer.best_dir))
        return self.fit_result

    def evaluate(self, test: bool = False) -> dict[str, float]:
        """Metrics over the eval (or, with ``test=True``, the test) datasets.

        Returns:
            ``{"eval_<task>_loss", "eval_<task>_<head>_<metric>", "eval_loss", "eval_overall_f1"}``.
        """
        loaders = self.test_dataloaders if test else self.eval_dataloaders
        if not loaders:
            what = "test_data_path" if test else "eval_data_path (or eval_split > 0)"
            raise ValueError(f"no {'test' if test else 'eval'} data: set tasks[].{what}")
        metrics = evaluate(self.model, self.objective, SequentialTaskLoader(loaders), runtime=self.runtime,
                           progress=self.training.progress, desc="test" if test else "eval")
        step = self.fit_result.state.global_step if self.fit_result is not None else 0
        if test:
            self._log_metrics({"test_" + k[len("eval_"):]: v for k, v in metrics.items()}, step)
        return metrics

    def save_model(self, folder: str | Path | None = None) -> Path:
        """Write the current weights as a reloadable folder (default ``<output_dir>/final_model``);
        under torchrun only rank 0 writes (the weights are the same on every rank)."""
        from trainhub.text.checkpoint import save_model_folder

        folder = Path(folder or self.output_dir / "final_model")
        if not self.runtime.is_main:
            return folder
        return save_model_folder(folder, self.model, self.config, self.tokenizer)

    def close(self) -> None:
        """End the MLflow run / close the TensorBoard writer; safe to call twice or after an error."""
        if self._closed:
            return
        self._closed = True
        if self.logger is not None:
            self.logger.close()
            log.info("%s logger closed", "+".join(self.training.logging.services))

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
