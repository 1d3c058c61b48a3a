"""``trainhub train CONFIG.yaml`` for CTR, matching and multi-task models: config in, run folder out.

The steps read top to bottom in :func:`train_run`: load and split the rows, fit the encoder and
scaling on the training rows, build the features and the registered model, train with the
Torch-RecHub-compatible trainer, evaluate on validation and test rows, then write the run folder
(see :mod:`trainhub.runs.folder`) and hand its files to the loggers as artifacts.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import yaml
from pydantic import ValidationError

from trainhub.engine import Runtime, seed_everything, unwrap_model
from trainhub.engine.checkpoint import plain_state_dict, save_weights
from trainhub.engine.loop import check_monitor
from trainhub.files import write_text_atomic
from trainhub.logging import MultiLogger, build_logger, flatten_params
from trainhub.models.summary import model_summary
from trainhub.runs.config import ConfigError, RunConfig, TrainerConfig, load_run_config
from trainhub.runs.folder import FORMAT, FORMAT_VERSION, WEIGHTS, Run, export_embeddings, write_manifest
from trainhub.runs.plots import MetricRecorder, plot_curves
from trainhub.runs.prepare import Preprocessor, check_labels, load_frames
from trainhub.runs.specs import (
    check_model_params,
    feature_to_dict,
    is_feature_param,
    params_to_json,
    resolve_feature_refs,
)
from trainhub.runs.staging import RunStaging

__all__ = ["RunResult", "train_run", "FAMILY_TRAINERS"]

log = logging.getLogger(__name__)

#: Model family (registry) -> trainer kind.
FAMILY_TRAINERS = {"ranking": "ctr", "matching": "match", "multitask": "mtl", "generative": "seq"}


@dataclass
class RunResult:
    """What a run produced: its folder, metrics per split, and a few facts about training."""

    run_dir: Path
    metrics: dict[str, dict[str, float]]
    best_epoch: int | None
    epochs_run: int
    num_parameters: int
    rows: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "rows": self.rows, "epochs_run": self.epochs_run,
                "best_epoch": self.best_epoch, "num_parameters": self.num_parameters, **self.metrics}


class _KeepOpen:
    """Hands a logger to a trainer without letting the trainer close it (test metrics and
    artifacts are logged after ``fit`` returns). Its state goes into the trainer's ``last.ckpt``,
    so a resumed run's ``metrics.csv`` and curves continue where the checkpoint was."""

    def __init__(self, inner: Any):
        self.inner = inner

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.inner.log_metrics(metrics, step)

    def log_params(self, params: dict[str, Any]) -> None:
        self.inner.log_params(params)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def close(self) -> None:
        pass


# -- pieces -----------------------------------------------------------------------------------
def _trainer_kind(cfg: RunConfig) -> str:
    from trainhub.models import get_model_entry

    family = get_model_entry(cfg.model.name).family
    kind = FAMILY_TRAINERS.get(family)
    if kind is None:
        raise ConfigError(f"model.name: {cfg.model.name} is a {family} model, which `trainhub train` has no "
                          "trainer for")
    if cfg.trainer.type is not None and cfg.trainer.type != kind:
        raise ConfigError(f"trainer.type: {cfg.model.name} is a {family} model and trains with the {kind} trainer, "
                          f"not {cfg.trainer.type}")
    try:  # re-check the family-only keys now that the family is known
        TrainerConfig.model_validate({**cfg.trainer.model_dump(exclude_none=True), "type": kind})
    except ValidationError as err:
        msg = err.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"trainer: {msg} ({cfg.model.name} is a {family} model)") from None
    return kind


def _task_types(cfg: RunConfig, labels: Sequence[str]) -> list[str]:
    types = cfg.trainer.task_types or cfg.model.params.get("task_types") or ["classification"] * len(labels)
    return list(types)


def build_model(cfg: RunConfig, features: Mapping[str, Any], groups: Mapping[str, list[str]],
                task_types: Sequence[str] | None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The registered model with feature names resolved; returns it and its parameters."""
    import inspect

    from trainhub.models import get_model_entry

    entry = get_model_entry(cfg.model.name)
    params = dict(cfg.model.params)
    try:
        for key, value in list(params.items()):
            if is_feature_param(key):
                params[key] = resolve_feature_refs(value, features, groups, f"model.params.{key}")
        if task_types is not None and "task_types" in inspect.signature(entry.cls).parameters:
            params.setdefault("task_types", list(task_types))
        check_model_params(entry.cls, params)
        return entry.cls(**params), params
    except (ValueError, TypeError, KeyError) as err:
        message = str(err.args[0]) if err.args else str(err)
        where = "" if message.startswith("model.params") else f"model {cfg.model.name}: "
        raise ConfigError(f"{where}{message}") from None


def _optimizer(cfg: RunConfig) -> tuple[Any, dict[str, Any]]:
    fn = getattr(torch.optim, cfg.trainer.optimizer.name, None)
    if not (isinstance(fn, type) and issubclass(fn, torch.optim.Optimizer)):
        raise ConfigError(f"trainer.optimizer.name: torch.optim has no optimizer {cfg.trainer.optimizer.name!r}")
    return fn, cfg.trainer.optimizer.params


def _scheduler(cfg: RunConfig) -> tuple[Any, dict[str, Any] | None]:
    if cfg.trainer.scheduler is None:
        return None, None
    fn = getattr(torch.optim.lr_scheduler, cfg.trainer.scheduler.name, None)
    if not isinstance(fn, type):
        raise ConfigError(f"trainer.scheduler.name: torch.optim.lr_scheduler has no {cfg.trainer.scheduler.name!r}")
    return fn, cfg.trainer.scheduler.params


def trainer_options(cfg: RunConfig, run_dir: Path, logger: Any, resume: bool) -> dict[str, Any]:
    """The keyword arguments every trainer face takes, from the ``trainer`` section."""
    t = cfg.trainer
    optimizer_fn, optimizer_params = _optimizer(cfg)
    scheduler_fn, scheduler_params = _scheduler(cfg)
    common = dict(optimizer_fn=optimizer_fn, optimizer_params=optimizer_params, scheduler_fn=scheduler_fn,
                  scheduler_params=scheduler_params, n_epoch=t.n_epoch, earlystop_patience=t.earlystop_patience,
                  device=t.device, model_path=str(run_dir), model_logger=[logger], seed=cfg.seed,
                  max_grad_norm=t.max_grad_norm, precision=t.precision, sparse_embeddings=t.sparse_embeddings,
                  progress=t.progress, save_last=t.save_last or bool(t.resume), resume=resume)
    if t.earlystop_monitor is not None:
        common["earlystop_monitor"] = t.earlystop_monitor
    common["earlystop_mode"] = t.earlystop_mode  # None: the direction the task declares for the monitor
    return common


def _build_trainer(kind: str, cfg: RunConfig, model: torch.nn.Module, task_types: list[str], run_dir: Path,
                   logger: Any, resume: bool):
    from trainhub.trainers import CTRTrainer, MatchTrainer, MTLTrainer

    t = cfg.trainer
    common = {**trainer_options(cfg, run_dir, logger, resume), "regularization_params": t.regularization}
    if kind == "ctr":
        return CTRTrainer(model, loss_mode=True if t.loss_mode is None else t.loss_mode, **common)
    if kind == "mtl":
        return MTLTrainer(model, task_types, adaptive_params=t.adaptive_params,
                          earlystop_taskid=t.earlystop_taskid or 0, **common)
    return MatchTrainer(model, mode=t.mode or 0, in_batch_neg=bool(t.in_batch_neg),
                        in_batch_neg_ratio=t.in_batch_neg_ratio, hard_negative=bool(t.hard_negative),
                        sampler_seed=t.sampler_seed, **common)


def _loaders(cfg: RunConfig, x: dict, y: dict):
    from trainhub.data.dataset import DictDataset, make_loader

    eval_bs = cfg.trainer.eval_batch_size or 4 * cfg.trainer.batch_size
    out = {}
    for part in ("train", "val", "test"):
        if x.get(part) is None:
            out[part] = None
            continue
        ds = DictDataset(x[part], y[part])
        out[part] = (make_loader(ds, cfg.trainer.batch_size, shuffle=True, seed=cfg.seed) if part == "train"
                     else make_loader(ds, eval_bs))
    return out


def _match_setup(cfg: RunConfig, pre: Preprocessor, frames: dict, x: dict, trainer: Any) -> dict[str, Any]:
    """Item table, query rows and evaluators of a matching run (Recall@K needs ``dataset.item_id``)."""
    import pandas as pd

    from trainhub.runs.retrieval import RetrievalEvaluator

    ds = cfg.dataset
    item_columns = ds.item_columns or ([ds.item_id] if ds.item_id else [])
    unknown = [c for c in item_columns if c not in pre.input_columns]
    if unknown:
        raise ConfigError(f"dataset.item_columns: {unknown[0]!r} is not a sparse, dense or sequence column")
    user_columns = [c for c in pre.input_columns if c not in item_columns]
    setup: dict[str, Any] = {"item_id": ds.item_id, "user_id": ds.user_id, "item_columns": item_columns,
                             "user_columns": user_columns, "evaluators": {}}
    if not ds.item_id:
        return setup
    if ds.item_id not in pre.sparse:
        raise ConfigError(f"dataset.item_id: {ds.item_id!r} must be a sparse column")
    all_rows = pd.concat([f for f in frames.values() if f is not None], ignore_index=True)
    items = all_rows.drop_duplicates(subset=ds.item_id, keep="last").reset_index(drop=True)
    item_x = pre.transform(items, "the item table", columns=item_columns)
    setup["items"], setup["all_rows"] = items, all_rows

    def embed(model, tower, loader):
        return trainer.inference_embedding(model, tower, loader, model_path=None)

    batch = cfg.trainer.eval_batch_size or 4 * cfg.trainer.batch_size
    for part in ("val", "test"):
        if x.get(part) is not None:
            setup["evaluators"][part] = RetrievalEvaluator(
                embed, item_x, item_x[ds.item_id], x[part], x[part][ds.item_id], cfg.trainer.topk, batch)
    return setup


def _run_params(cfg: RunConfig, kind: str, rows: Mapping[str, int], extra: Mapping[str, Any]) -> dict[str, Any]:
    params = {f"config.{k}": v for k, v in flatten_params(cfg.to_dict()).items()}
    params.update({"trainer_kind": kind, "batch_size": cfg.trainer.batch_size, "run_name": cfg.run_name,
                   **{f"rows.{k}": v for k, v in rows.items()}, **extra})
    return params


# -- the run ----------------------------------------------------------------------------------
def train_run(config: RunConfig | str | Path | dict, overrides: Sequence[str] = ()) -> RunResult:
    """Train the model a run config describes and write its run folder.

    Args:
        config: a :class:`RunConfig`, a YAML path or a dict.
        overrides: ``key.sub=value`` strings applied before validation.

    Returns:
        A :class:`RunResult` with the run folder and ``{"val": {...}, "test": {...}}`` metrics.

    Example:
        >>> result = train_run("examples/configs/deepfm_ctr.yaml", ["trainer.n_epoch=2"])
        >>> load_run(result.run_dir).predict(new_rows)
    """
    cfg = load_run_config(config, overrides)
    kind = _trainer_kind(cfg)
    # Under torchrun every rank trains; rank 0 alone checks, writes and swaps in the run folder.
    runtime = Runtime(device=cfg.trainer.device)
    staging = RunStaging(cfg.run_dir)
    _on_main(runtime, staging.check)  # before anything is read or written
    threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        with staging.locked() if runtime.is_main else contextlib.nullcontext():
            return _train(cfg, kind, staging, runtime)
    finally:
        torch.set_num_threads(threads)  # the setting is process-wide: give it back


def _on_main(runtime: Runtime, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` on rank 0; its result, or its error raised, on every rank (no rank is left
    waiting for one that failed)."""
    result, error = None, None
    if runtime.is_main:
        try:
            result = fn(*args)
        except Exception as err:  # noqa: BLE001 - raised on every rank below
            error = err
    result, error = runtime.broadcast_object((result, error))
    if error is not None:
        raise error
    return result


def _prepare(cfg: RunConfig, kind: str) -> dict[str, Any]:
    """Rows, encoder, targets and features; every data check runs here, before any file is written."""
    try:
        frames = load_frames(cfg.dataset, cfg.seed)
        pre = Preprocessor.from_config(cfg.dataset).fit(frames["train"], "the training rows")
        x = {p: pre.transform(f, f"the {p} rows") if f is not None else None for p, f in frames.items()}
        y = {p: pre.targets(f, f"the {p} rows") if f is not None else None for p, f in frames.items()}
        features = pre.features()
        groups = pre.groups(cfg.dataset.groups)
    except (KeyError, ValueError, TypeError) as err:
        raise ConfigError(str(err.args[0]) if err.args else str(err)) from None
    if kind == "match":  # retrieval data may come without labels: the positive is the row's item
        y = {p: (v if v is not None else np.zeros(len(frames[p]), dtype=np.int64)) if frames[p] is not None else None
             for p, v in y.items()}
    elif not pre.labels:
        raise ConfigError("dataset.label: a ranking or multi-task run needs its label column(s)")
    task_types = _task_types(cfg, pre.labels) if kind == "mtl" else None
    check_labels(kind, cfg, pre.labels, task_types, y, frames)
    rows = {p: len(f) for p, f in frames.items() if f is not None}
    return {"frames": frames, "pre": pre, "x": x, "y": y, "features": features, "groups": groups,
            "task_types": task_types, "rows": rows}


def _resume_source(cfg: RunConfig, staging: RunStaging) -> Path | None:
    folder = staging.resume_source(cfg.trainer.resume)
    if folder is not None:
        _check_same_config(cfg, folder)
    return folder


def _check_same_config(cfg: RunConfig, folder: Path) -> None:
    """A resumed run must train what the checkpoint trained: the same data, model and seed."""
    path = folder / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"trainer.resume: {folder} has no config.yaml, so it cannot be checked that this config "
                          "trains what the checkpoint trained; leave resume off to start a new run")
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"trainer.resume: {path} is damaged ({str(err).splitlines()[0]}); leave resume off to "
                          "start a new run") from None
    current = cfg.to_dict()
    free = {"n_epoch", "resume", "progress", "earlystop_patience"}  # may change between the two runs
    for section in ("dataset", "model", "trainer", "seed"):
        old, new = saved.get(section), current.get(section)
        if section == "trainer" and isinstance(old, dict) and isinstance(new, dict):
            old = {k: v for k, v in old.items() if k not in free}
            new = {k: v for k, v in new.items() if k not in free}
        if old != new:
            raise ConfigError(
                f"trainer.resume: {folder} was trained with a different {section!r} section than this config "
                f"({path}); resume with the same config (only trainer.n_epoch, earlystop_patience and progress "
                "may change), or leave resume off to start a new run")


@dataclass
class _Job:
    """What differs between run kinds; :func:`_train` does the rest the same way for all."""

    trainer: Any
    loaders: dict[str, Any]
    rows: dict[str, int]
    params: dict[str, Any]
    write_inputs: Any  # (folder) -> None: the files that turn raw rows into model inputs
    manifest: dict[str, Any] = field(default_factory=dict)  # kind-specific run.json entries
    run_params: dict[str, Any] = field(default_factory=dict)
    evaluators: dict[str, Any] = field(default_factory=dict)  # split -> extra metrics (retrieval)
    finish: Any = None  # (folder, manifest) -> None: extra files (embeddings), rank 0


def _tabular_job(cfg: RunConfig, kind: str, stage: Path, logger: Any, resume: bool) -> _Job:
    """CTR, matching and multi-task runs: rows -> encoder + scaling -> features -> model."""
    data = _prepare(cfg, kind)
    frames, pre, x, y = data["frames"], data["pre"], data["x"], data["y"]
    features, task_types = data["features"], data["task_types"]
    seed_everything(cfg.seed)  # the same weights whatever the data loading consumed
    model, params = build_model(cfg, features, data["groups"], task_types)
    trainer = _build_trainer(kind, cfg, model, task_types or [], stage, logger, resume)
    job = _Job(trainer, _loaders(cfg, x, y), data["rows"], params, pre.save,
               {"features": [feature_to_dict(f) for f in features.values()]}, {"num_features": len(features)})
    if kind == "ctr":
        job.manifest["loss_mode"] = True if cfg.trainer.loss_mode is None else cfg.trainer.loss_mode
    if kind == "mtl":
        job.manifest.update(task_types=task_types, labels=pre.labels)
    if kind != "match":
        return job
    match = _match_setup(cfg, pre, frames, x, trainer)
    job.evaluators = match["evaluators"]
    job.manifest["match"] = {k: match[k] for k in ("item_id", "user_id", "item_columns", "user_columns")}
    if "val" in match["evaluators"]:
        evaluator = match["evaluators"]["val"]  # adds recall_at_K to every validation
        evaluator.model = trainer.model
        trainer.callbacks.append(evaluator)
        if cfg.trainer.earlystop_monitor is None:  # retrieval quality is what a matching run is for
            trainer.early_stopper.monitor = f"recall_at_{min(cfg.trainer.topk)}"
    if match["item_id"]:
        def finish(folder: Path, manifest: dict) -> None:
            run = Run(folder, manifest, unwrap_model(trainer.model), pre, features, trainer.device)
            export_embeddings(run, match["items"], match["all_rows"] if match["user_id"] else None)

        job.finish = finish
    return job


def _train(cfg: RunConfig, kind: str, staging: RunStaging, runtime: Runtime) -> RunResult:
    seed_everything(cfg.seed)

    # 1-3. data, model and trainer, still writing nothing: the trainer's folder is the staging
    # folder, created below (every check has run by then)
    resume_from = _on_main(runtime, _resume_source, cfg, staging)
    stage = staging.stage
    main = runtime.is_main
    recorder = MetricRecorder()
    logger = MultiLogger([recorder])
    if kind == "seq":
        from trainhub.runs.sequences import sequence_job

        job = sequence_job(cfg, stage, _KeepOpen(logger), resume_from is not None)
    else:
        job = _tabular_job(cfg, kind, stage, _KeepOpen(logger), resume_from is not None)
    trainer, loaders, rows = job.trainer, job.loaders, job.rows
    check_monitor(trainer.task, trainer.early_stopper if loaders["val"] is not None else None, trainer.callbacks)

    # 4. training in the staging folder; loggers stay open past fit for test metrics and artifacts
    _on_main(runtime, staging.open, resume_from)
    backends = MultiLogger([])
    if main:
        backends = build_logger(cfg.loggers.names, save_dir=stage / "logs",
                                experiment_name=cfg.loggers.experiment_name, tracking_uri=cfg.loggers.tracking_uri,
                                run_name=cfg.run_name, artifact_dir=staging.target.resolve() / "logs" / "mlartifacts")
    logger.loggers.extend(backends.loggers)
    committed = False
    try:
        if main:
            job.write_inputs(stage)
            write_text_atomic(stage / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            logger.log_params(_run_params(cfg, kind, rows, job.run_params))
        if kind == "mtl":  # returns Torch-RecHub's per-epoch lists; the full result is kept on the trainer
            trainer.fit(loaders["train"], loaders["val"], seed=cfg.seed)
        else:
            trainer.fit(loaders["train"], loaders["val"])
        fit_result = trainer.fit_result

        # 5. evaluation of the best weights
        metrics: dict[str, dict[str, float]] = {}
        for part in ("val", "test"):
            if loaders[part] is None:
                continue
            scores = trainer.evaluate_all(trainer.model, loaders[part])
            if part in job.evaluators:
                scores.update(job.evaluators[part].compute(trainer.model))
            metrics[part] = {k: float(v) for k, v in scores.items()}
        step = fit_result.state.global_step
        if "test" in metrics:  # at the step of the weights that were kept (the best validation)
            best = fit_result.best_epoch
            kept = next((s for s, n, v in recorder.records if n == "epoch" and best is not None and int(v) == best + 1),
                        step)
            logger.log_metrics({f"test/{k}": v for k, v in metrics["test"].items()}, step=kept)

        # 6. the run folder, written whole in the staging folder, then swapped in (rank 0)
        summary = model_summary(trainer.model)
        if not main:
            runtime.barrier()  # rank 0 has swapped the folder in when this returns
            committed = True
            return RunResult(staging.target, metrics, fit_result.best_epoch, fit_result.state.epoch,
                             summary["num_parameters"], rows)
        save_weights(stage / WEIGHTS, plain_state_dict(trainer.model, copy=False),
                     {"model": cfg.model.name, "format": FORMAT})
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "trainhub_version": _version(),
            "name": cfg.run_name, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "trainer": kind, "model": {"name": cfg.model.name, "params": params_to_json(job.params)},
            "features": [], "weights": WEIGHTS, "metrics": metrics, "rows": rows,
            "best_epoch": fit_result.best_epoch, "epochs_run": fit_result.state.epoch, "global_steps": step,
            "summary": summary, "seed": cfg.seed, **job.manifest,
        }
        if job.finish is not None:
            job.finish(stage, manifest)
        if cfg.loggers.plots:
            title = f"{cfg.model.name} on {cfg.dataset.name or 'files'}"
            plot_curves(recorder, stage / "curves.png", title)
        write_manifest(stage, manifest)  # last: a folder with run.json is a finished run
        _close_file_loggers(backends)  # metrics.csv and event files complete before the swap
        run_dir = staging.commit()
        committed = True
        runtime.barrier()
        _relocate(backends, run_dir / "logs")
        _log_artifacts(logger, run_dir)
    except BaseException:
        if not committed and main:
            log.error("the run did not finish; %s is unchanged. What it wrote is in %s (trainer.resume=auto "
                      "continues from its last finished epoch)", staging.target, stage)
        raise
    finally:
        backends.close()
    return RunResult(run_dir, metrics, fit_result.best_epoch, fit_result.state.epoch,
                     summary["num_parameters"], rows)


def _close_file_loggers(backends: MultiLogger) -> None:
    for lg in backends.loggers:
        if not hasattr(lg, "relocate"):  # MLflow stays open: artifacts are logged from the final folder
            lg.close()


def _relocate(backends: MultiLogger, log_dir: Path) -> None:
    for lg in backends.loggers:
        if hasattr(lg, "relocate"):
            lg.relocate(log_dir)


def _log_artifacts(logger: MultiLogger, run_dir: Path) -> None:
    for name in ("config.yaml", "run.json", WEIGHTS, "encoder.json", "preprocess.json", "items.json", "curves.png"):
        if (run_dir / name).is_file():
            logger.log_artifact(str(run_dir / name))
    if (run_dir / "embeddings").is_dir():
        logger.log_artifact(str(run_dir / "embeddings"))


def _version() -> str:
    import trainhub

    return trainhub.__version__
