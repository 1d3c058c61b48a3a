"""The training loop: ``fit()`` runs epochs of ``train_epoch()`` and ``evaluate()`` over a Task.

It reads top to bottom. Everything model-specific sits in the Task; devices and processes in the
Runtime; stopping in EarlyStopping; files in the Checkpointer; metrics output in the logger.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from trainhub.engine.callbacks import fire
from trainhub.engine.checkpoint import CheckpointError, CheckpointStore, MainProcessWrites, plain_state_dict
from trainhub.engine.keys import STEP_LOSS, TRAIN, VAL, logged, task_key
from trainhub.engine.malloc import retain_freed_memory
from trainhub.engine.resume import load_loader_state, loader_state
from trainhub.engine.resume import rng_state as _rng_state
from trainhub.engine.resume import set_rng_state as _set_rng_state
from trainhub.engine.runtime import Runtime, unwrap_model
from trainhub.engine.stopping import EarlyStopping
from trainhub.engine.task import EpochLogs, NamedMetrics, Stateful, StepOutput, SyncedMetrics, Task, custom_backward
from trainhub.metrics.undefined import collect_undefined, report_undefined
from trainhub.optim import clip_grad_norm_

__all__ = ["FitConfig", "TrainState", "FitResult", "fit", "train_epoch", "evaluate"]

log = logging.getLogger(__name__)


@dataclass
class FitConfig:
    """Loop settings.

    Attributes:
        max_epochs: epochs to run (fewer when early stopping fires).
        grad_accum_steps: batches whose gradients are summed before one optimizer step.
        max_grad_norm: clip the global gradient norm to this value (None: no clipping).
        scheduler_interval: step the LR scheduler every ``"epoch"`` or every optimizer ``"step"``.
        eval_every_n_epochs: validate every N epochs.
        eval_every_n_steps: also validate every N optimizer steps (None: only at epoch ends).
        log_every_n_steps: log the running training loss every N optimizer steps.
        restore_best: after training, load the best validation weights into the model.
        resume: ``True`` continues from the checkpointer's ``last.ckpt`` (an error names the file
            when it is missing); ``"auto"`` continues when it exists and starts afresh otherwise.
        progress: show tqdm progress bars (main process only; hidden when not on a terminal).
        precision: ``"32"`` (default), ``"bf16"`` (autocast to bfloat16, CPU or GPU) or ``"16"``
            (float16 autocast with a gradient scaler; CUDA only).
    """

    max_epochs: int = 10
    grad_accum_steps: int = 1
    max_grad_norm: float | None = None
    scheduler_interval: str = "epoch"
    eval_every_n_epochs: int = 1
    eval_every_n_steps: int | None = None
    log_every_n_steps: int = 10
    restore_best: bool = True
    resume: bool | str = False
    progress: bool = True
    precision: str = "32"

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}: a run that trains nothing would "
                             "only overwrite the files of an earlier run")
        if self.resume not in (True, False, "auto"):
            raise ValueError(f"resume must be True, False or 'auto', got {self.resume!r}")
        if self.precision not in ("32", "bf16", "16"):
            raise ValueError(f"precision must be '32', 'bf16' or '16', got {self.precision!r}")
        if self.scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {self.scheduler_interval!r}")
        if self.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")


@dataclass
class TrainState:
    """Everything about loop progress that a resume needs, in one place."""

    epoch: int = 0  # epochs completed
    global_step: int = 0  # optimizer steps taken
    history: list[dict[str, float]] = field(default_factory=list)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "global_step": self.global_step, "history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.history = list(state["history"])


@dataclass
class FitResult:
    state: TrainState
    best_metrics: dict[str, float] | None = None
    best_epoch: int | None = None
    stopped_early: bool = False

    @property
    def history(self) -> list[dict[str, float]]:
        return self.state.history


def _is_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


class _Precision:
    """Autocast context and gradient scaling for one precision setting."""

    def __init__(self, precision: str, device: torch.device):
        self.dtype = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[precision]
        if precision == "16" and device.type != "cuda":
            raise ValueError("precision '16' needs a CUDA device; use 'bf16' on the CPU")
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if precision == "16" else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def settle(optimizer: Any) -> None:
    """Let an optimizer that defers work for untouched rows (trainhub's row-wise optimizers have
    ``flush()``) bring the weights up to date before anyone reads them."""
    flush = getattr(optimizer, "flush", None)
    if callable(flush):
        flush()


def _check_finite(value: float, where: str) -> None:
    if not math.isfinite(value):
        raise FloatingPointError(f"training loss became {value} {where}; "
                                 "lower the learning rate or check the inputs for NaN/inf")


def _bar_disabled(progress: bool, runtime: Runtime) -> bool | None:
    # None lets tqdm hide the bar when output is not a terminal (CI logs, files).
    return True if not (progress and runtime.is_main) else None


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def train_epoch(
    model: nn.Module,
    task: Task,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    *,
    runtime: Runtime | None = None,
    config: FitConfig | None = None,
    state: TrainState | None = None,
    scheduler: Any = None,
    logger: Any = None,
    callbacks: Sequence[Any] = (),
    desc: str = "train",
    after_step: Callable[[], bool] | None = None,
    precision: _Precision | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns the epoch's sample-weighted mean ``loss`` and parts.

    ``after_step`` runs after every optimizer step; when it returns True the epoch ends early
    (used for step-based validation with early stopping). ``precision`` carries the float16
    gradient scaler from epoch to epoch (``fit`` passes one; by default a new one is made).
    """
    runtime = runtime or Runtime()
    config = config or FitConfig()
    state = state or TrainState()
    if runtime.device.type == "cpu":
        retain_freed_memory()  # each step's temporaries reuse the last step's pages
    model.train()
    own_backward = custom_backward(task)
    precision = precision or _Precision(config.precision, runtime.device)
    if precision.scaler is not None and own_backward is not None:
        raise ValueError("precision '16' cannot be combined with a task that runs its own backward; use 'bf16'")
    if own_backward is not None and config.grad_accum_steps > 1:
        raise ValueError("grad_accum_steps > 1 cannot be combined with a task that runs its own backward "
                         "(e.g. GradNorm, MetaBalance): each of its backward passes is one optimizer step")
    scaler = precision.scaler
    accum = config.grad_accum_steps
    # Sums stay on the device; reading a value to the host waits for the device. On the CPU that
    # wait is free, so every loss is checked before it reaches the weights; on an accelerator the
    # check (and the progress read-out) happens every log_every_n_steps batches.
    check_every = 1 if runtime.device.type == "cpu" else max(1, config.log_every_n_steps)
    totals: dict[str, torch.Tensor] = {}
    seen = 0
    running, running_n = torch.zeros((), device=runtime.device), 0
    bar = tqdm(loader, desc=desc, disable=_bar_disabled(config.progress, runtime), leave=False, dynamic_ncols=True)
    started = time.perf_counter()
    num_batches = len(loader) if hasattr(loader, "__len__") else None
    for i, batch in enumerate(bar):
        if i % accum == 0:
            # Cleared when a step's first batch starts, not after the step: as in a plain loop,
            # the last step's gradients stay readable (p.grad) once train_epoch returns.
            optimizer.zero_grad(set_to_none=True)
        batch = runtime.to_device(batch)
        with precision.autocast():
            out: StepOutput = task.training_step(model, batch)
        loss = out.loss.detach()
        if i % check_every == 0:  # before backward and step: a bad batch never reaches the weights
            _check_finite(float(loss), f"at epoch {state.epoch}, batch {i}")
        # The last group of an epoch may be shorter: average over the batches it really has.
        group = accum if num_batches is None else min(accum, num_batches - (i // accum) * accum)
        if own_backward is not None:
            own_backward(out)
        elif scaler is not None:
            scaler.scale(out.loss / group).backward()
        else:
            (out.loss / group).backward()
        last_batch = num_batches is not None and i + 1 == num_batches
        if (i + 1) % accum == 0 or last_batch:
            if scaler is not None:
                scaler.unscale_(optimizer)  # clip true gradients, not scaled ones
            if config.max_grad_norm is not None:
                clip_grad_norm_(model.parameters(), config.max_grad_norm)  # row-sparse grads too
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            state.global_step += 1
            if scheduler is not None and config.scheduler_interval == "step" and not _is_plateau(scheduler):
                scheduler.step()
            if after_step is not None:
                settle(optimizer)  # the callback may validate or save
            stop_now = after_step is not None and after_step()
        else:
            stop_now = False
        n = out.batch_size
        seen += n
        totals["loss"] = totals.get("loss", 0.0) + loss * n
        for key, part in out.parts.items():
            totals[key] = totals.get(key, 0.0) + part.detach() * n
        running += loss
        running_n += 1
        if running_n == config.log_every_n_steps:
            mean = float(running) / running_n
            _check_finite(mean, f"in the {running_n} batches up to epoch {state.epoch}, batch {i}")
            rows_per_s = seen / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix({"loss": f"{mean:.4f}", "rows/s": f"{rows_per_s:,.0f}"})
            if logger is not None:
                logger.log_metrics({STEP_LOSS: mean}, step=state.global_step)
            running, running_n = torch.zeros((), device=runtime.device), 0
        fire(callbacks, "on_train_batch_end", state, out)
        if stop_now:
            break
    bar.close()
    if seen == 0:
        raise ValueError("the training data loader yielded no batches")
    settle(optimizer)
    logs = {k: float(v) / seen for k, v in totals.items()}
    _check_finite(logs["loss"], f"in epoch {state.epoch}")
    return logs


@torch.no_grad()
def evaluate(
    model: nn.Module,
    task: Task,
    loader: Iterable,
    *,
    runtime: Runtime | None = None,
    progress: bool = True,
    desc: str = "validation",
) -> dict[str, float]:
    """Run ``task.validation_step`` over ``loader`` in eval mode and return ``task.compute_metrics()``.

    Under torchrun each rank scores its own block of the rows; the task's metric state is then
    gathered (``task.sync_metrics(gather)``), so the metrics cover the whole loader, equal a
    single-process evaluation of the same weights, and are identical on every rank (rank 0's
    values are broadcast, so decisions taken on them can never diverge).
    """
    runtime = runtime or Runtime()
    if runtime.device.type == "cpu":
        retain_freed_memory()
    loader, sharded = runtime.shard(loader, train=False)
    scoring = runtime.eval_model(model)
    was_training = model.training
    scoring.eval()
    try:
        num_batches = 0
        for batch in tqdm(loader, desc=desc, disable=_bar_disabled(progress, runtime), leave=False):
            task.validation_step(scoring, runtime.to_device(batch))
            num_batches += 1
        if runtime.is_distributed and sharded:
            num_batches = sum(runtime.all_gather_object(num_batches))
        if num_batches == 0:
            report_undefined(f"the {desc} data is empty (its loader yielded no batches)")
        return _global_metrics(task, runtime, sharded)
    finally:
        model.train(was_training)


_WARNED_NO_SYNC: set[str] = set()


def _global_metrics(task: Task, runtime: Runtime, sharded: bool) -> dict[str, float]:
    """``task.compute_metrics()`` over every rank's validation state (the one gather point)."""
    if not runtime.is_distributed:
        return task.compute_metrics()
    if sharded and isinstance(task, SyncedMetrics):
        task.sync_metrics(runtime.all_gather_object)
    elif sharded and runtime.is_main and type(task).__name__ not in _WARNED_NO_SYNC:
        _WARNED_NO_SYNC.add(type(task).__name__)
        log.warning("%s has no sync_metrics(gather): validation metrics are rank 0's share of the data only",
                    type(task).__name__)
    return runtime.broadcast_object(task.compute_metrics())


def check_monitor(task: Task, stopper: EarlyStopping | None, callbacks: Sequence[Any] = ()) -> None:
    """Fail before any training when early stopping monitors a metric that validation never produces.

    The task lists its keys in ``metric_names()`` (:class:`NamedMetrics`); a callback that adds
    metrics in ``on_validation_end`` lists its own the same way. When the task or such a callback
    does not say what it produces, nothing is checked.
    """
    adders = [cb for cb in callbacks if callable(getattr(cb, "on_validation_end", None))]
    sources = [task, *adders]
    if stopper is None or not all(isinstance(s, NamedMetrics) for s in sources):
        return
    known = [name for s in sources for name in s.metric_names()]
    if stopper.monitor not in known and task_key(stopper.monitor) not in known:
        raise ValueError(f"early stopping monitors {stopper.monitor!r}, but validation produces {known}; "
                         "monitor one of these")


def _warn_undefined(metrics: dict[str, float], reasons: list[str], stopper: EarlyStopping | None,
                    warned: set[str], epoch: int) -> None:
    """One warning per run for each validation metric that came out NaN, saying why and what follows."""
    fresh = [k for k, v in metrics.items() if isinstance(v, float) and math.isnan(v) and k not in warned]
    if not fresh:
        return
    warned.update(fresh)
    why = "; ".join(reasons) if reasons else "the task returned NaN"
    names = ", ".join(repr(k) for k in fresh)
    message = f"validation metric {names} is undefined (NaN) at epoch {epoch}: {why}."
    if stopper is not None and (stopper.monitor in fresh or task_key(stopper.monitor) in fresh):
        message += (f" Early stopping and the best checkpoint follow {stopper.monitor!r}: an undefined value "
                    "neither counts as an improvement nor uses up patience, so training goes on; if no validation "
                    "gives a defined value, the model keeps its last epoch's weights and no best checkpoint is "
                    "written. Monitor a metric that is defined on this validation set, or fix the set")
    log.warning(message)


def _read_resume(checkpointer: Any, resume: bool | str, runtime: Runtime) -> dict | None:
    """Rank 0 reads ``last.ckpt`` and hands it (or the error) to every rank (no shared filesystem
    needed). ``resume=True`` without the file is an error; ``"auto"`` then starts afresh."""
    runtime.barrier()
    answer: dict[str, Any] = {}
    if runtime.is_main:
        try:
            answer["payload"] = checkpointer.load_resume()
            if answer["payload"] is None and resume != "auto":
                raise FileNotFoundError(
                    f"resume=True, but there is no {checkpointer.last_path} to continue from (a run writes it at the "
                    "end of every epoch). Pass resume=False to start a new run, resume='auto' to continue only when "
                    "the file exists, or the folder of the run you mean to continue"
                )
        except Exception as err:  # noqa: BLE001 - handed to every rank, raised below
            answer["error"] = err
    answer = runtime.broadcast_object(answer)
    if "error" in answer:
        raise answer["error"]
    if answer["payload"] is None:
        log.info("resume='auto': no %s yet, starting a new run", checkpointer.last_path)
    return answer["payload"]


def _restore(payload: dict, path: Any, *, model: nn.Module, optimizer: Any, scheduler: Any,
             stopper: EarlyStopping | None, task: Any, state: TrainState, train_loader: Any, runtime: Runtime,
             precision: _Precision, logger: Any) -> None:
    """Put everything ``last.ckpt`` holds back in place."""
    try:
        unwrap_model(model).load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None and "scheduler" in payload:
            scheduler.load_state_dict(payload["scheduler"])
        if stopper is not None and "stopper" in payload:
            stopper.load_state_dict(payload["stopper"])
        if "task" in payload and isinstance(task, Stateful):
            task.load_state_dict(payload["task"])
        if precision.scaler is not None and "scaler" in payload:
            precision.scaler.load_state_dict(payload["scaler"])
        loaders = payload.get("loader_per_rank")
        if loaders and len(loaders) == runtime.world_size:
            load_loader_state(train_loader, loaders[runtime.rank])
        state.load_state_dict(payload["state"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} does not fit this run ({first}): it was written by another model, optimizer or data setup. "
            "Pass resume=False to start a new run (it replaces the file), or resume from the folder of the run "
            "that matches this setup"
        ) from err
    per_rank = payload.get("rng_per_rank")
    _set_rng_state(per_rank[runtime.rank] if per_rank and len(per_rank) == runtime.world_size else payload["rng"])
    if isinstance(logger, Stateful) and payload.get("logger") is not None:
        logger.load_state_dict(payload["logger"])  # drop what was logged after this checkpoint


def fit(
    model: nn.Module,
    task: Task,
    optimizer: torch.optim.Optimizer,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    config: FitConfig | None = None,
    scheduler: Any = None,
    runtime: Runtime | None = None,
    logger: Any = None,
    stopper: EarlyStopping | None = None,
    checkpointer: CheckpointStore | None = None,
    callbacks: Sequence[Any] = (),
) -> FitResult:
    """Train ``model`` on ``task``.

    Each epoch: train, validate (when ``val_loader`` is given), log ``train/*`` and ``val/*``
    metrics, step an epoch scheduler, save ``last.ckpt``, and stop when ``stopper`` says so. The
    best validation weights (by ``stopper.monitor``) are saved to ``best.safetensors`` when a
    checkpointer is given (else kept as a CPU copy) and loaded back at the end.

    Example:
        >>> result = fit(model, CTRTask(), torch.optim.Adam(model.parameters()), train_dl, val_dl,
        ...              config=FitConfig(max_epochs=5), stopper=EarlyStopping("auc", "max", patience=2))
    """
    config = config or FitConfig()
    runtime = runtime or Runtime()
    if checkpointer is not None:
        checkpointer = MainProcessWrites(checkpointer, runtime.is_main)
    state = TrainState()
    result = FitResult(state)
    best_cpu_state: dict[str, torch.Tensor] | None = None
    # Under torchrun: this rank's shards, and extra optimizer parameters kept in step across ranks.
    train_loader = runtime.distribute_loader(train_loader, train=True)
    val_loader = runtime.distribute_loader(val_loader, train=False)
    runtime.setup_optimizer(optimizer, model)

    check_monitor(task, stopper if val_loader is not None else None, callbacks)
    if stopper is not None:
        stopper.follow(task)  # a monitor without a direction takes the one its task declares
    precision = _Precision(config.precision, runtime.device)  # one gradient scaler for the whole run
    payload = _read_resume(checkpointer, config.resume, runtime) if config.resume and checkpointer else None
    if payload is not None:
        _restore(payload, checkpointer.last_path, model=model, optimizer=optimizer, scheduler=scheduler,
                 stopper=stopper, task=task, state=state, train_loader=train_loader, runtime=runtime,
                 precision=precision, logger=logger)
        log.info("resumed from %s after epoch %d", checkpointer.last_path, state.epoch)
        if state.epoch >= config.max_epochs and runtime.is_main:
            log.warning("the checkpoint %s has already trained %d epochs and this run asks for %d in all, so "
                        "nothing is trained: raise the number of epochs to train further", checkpointer.last_path,
                        state.epoch, config.max_epochs)
    elif checkpointer is not None:
        checkpointer.start_fresh()  # an earlier run's best/last files must not mix with this run's
    undefined_warned: set[str] = set()

    def validate(step: int) -> dict[str, float]:
        """Evaluate, track the best weights, and return the metrics."""
        with collect_undefined() as reasons:
            metrics = evaluate(model, task, val_loader, runtime=runtime, progress=config.progress)
        if runtime.is_main:
            _warn_undefined(metrics, reasons, stopper, undefined_warned, state.epoch)
        fire(callbacks, "on_validation_end", state, metrics)
        if stopper is not None and stopper.update(metrics, step):
            result.best_metrics, result.best_epoch = dict(metrics), state.epoch
            if checkpointer is not None:
                checkpointer.save_best(model, {"epoch": state.epoch, "step": state.global_step,
                                               "monitor": stopper.monitor, "mode": stopper.mode,
                                               "best_value": stopper.best})
            else:
                nonlocal best_cpu_state
                best_cpu_state = plain_state_dict(model)
        return metrics

    def validate_on_step() -> bool:
        if state.global_step % config.eval_every_n_steps:
            return False
        metrics = validate(state.global_step)
        if logger is not None:
            logger.log_metrics(logged(VAL, metrics), step=state.global_step)
        return stopper is not None and stopper.should_stop

    plateau_on_val = _is_plateau(scheduler) and stopper is not None and val_loader is not None
    if plateau_on_val and scheduler.mode != stopper.mode:
        raise ValueError(
            f"ReduceLROnPlateau(mode={scheduler.mode!r}) would follow {stopper.monitor!r}, which early stopping "
            f"treats as mode={stopper.mode!r}; pass scheduler mode={stopper.mode!r}"
        )
    step_eval = val_loader is not None and config.eval_every_n_steps is not None
    # Without step-based validation the stopper counts epochs; with it, optimizer steps.
    fire(callbacks, "on_fit_start", state)
    # A resumed run that had already stopped early does not train on.
    first_epoch = config.max_epochs if stopper is not None and stopper.should_stop else state.epoch
    result.stopped_early = first_epoch == config.max_epochs and state.epoch < config.max_epochs
    for epoch in range(first_epoch, config.max_epochs):
        sampler = getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # per-epoch order that a resume can replay
            sampler.set_epoch(epoch)
        fire(callbacks, "on_epoch_start", state)
        train_logs = train_epoch(
            model, task, optimizer, train_loader, runtime=runtime, config=config, state=state,
            scheduler=scheduler, logger=logger, callbacks=callbacks, desc=f"epoch {epoch + 1}/{config.max_epochs}",
            after_step=validate_on_step if step_eval else None, precision=precision,
        )
        # Each rank trained on an equal-sized shard: the mean over ranks is the epoch's mean.
        train_logs = runtime.mean_over_ranks(train_logs)
        logs = logged(TRAIN, train_logs)
        logs["learning_rate"] = _current_lr(optimizer)
        if isinstance(task, EpochLogs):
            logs.update(runtime.mean_over_ranks(task.epoch_logs()))

        metrics: dict[str, float] = {}
        stopped_mid_epoch = step_eval and stopper is not None and stopper.should_stop
        if val_loader is not None and not step_eval and (epoch + 1) % config.eval_every_n_epochs == 0:
            metrics = validate(epoch)
            logs.update(logged(VAL, metrics))

        if scheduler is not None and config.scheduler_interval == "epoch":
            if not _is_plateau(scheduler):
                scheduler.step()
            elif plateau_on_val:
                if metrics:  # only epochs that validated: one metric, one history
                    scheduler.step(stopper.value(metrics))
            else:
                scheduler.step(train_logs["loss"])

        state.epoch = epoch + 1
        state.history.append(logs)
        log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.6g}" for k, v in logs.items()))  # 1-based, as printed
        if logger is not None:
            # The optimizer step is the x axis of every curve (step losses, step and epoch
            # validation alike); the epoch travels along as a metric of its own.
            logger.log_metrics({**logs, "epoch": state.epoch}, step=state.global_step)
        if checkpointer is not None:
            rng = runtime.all_gather_object(_rng_state())  # each rank resumes its own random streams
            loaders = runtime.all_gather_object(loader_state(train_loader))
            checkpointer.save_resume({
                "model": model, "optimizer": optimizer, "scheduler": scheduler, "state": state.state_dict(),
                "stopper": stopper.state_dict() if stopper is not None else None,
                "task": task.state_dict() if isinstance(task, Stateful) else None,
                "rng": rng[0], "rng_per_rank": rng, "loader_per_rank": loaders, "scaler": precision.scaler,
                "logger": logger.state_dict() if isinstance(logger, Stateful) else None,
            })
        fire(callbacks, "on_epoch_end", state, logs)
        # Metrics are identical on every rank, so is the decision; rank 0's flag makes it certain.
        stop = runtime.broadcast_object(stopper is not None and (stopper.should_stop or stopped_mid_epoch))
        if stop:
            result.stopped_early = True
            where = (f"epoch {stopper.best_step + 1}" if not step_eval and stopper.best_step is not None
                     else f"step {stopper.best_step}")
            log.info("early stopping after epoch %d: no better %s for %d validations; best %s=%.6g at %s",
                     epoch + 1, stopper.monitor, stopper.patience, stopper.monitor, stopper.best, where)
            break

    if stopper is not None and result.best_epoch is None and stopper.best_step is not None:
        result.best_epoch = stopper.best_step  # best came from before a resume
    if stopper is not None and val_loader is not None and stopper.best is None and runtime.is_main:
        log.warning("no validation of this run gave a defined %r, so there is no best checkpoint: the model keeps "
                    "the weights of its last epoch (%d)", stopper.monitor, state.epoch - 1)
    if config.restore_best and result.best_epoch is not None:
        # Rank 0 wrote the best weights; it reads them back and broadcasts them to every rank.
        has_best = checkpointer is not None and runtime.broadcast_object(runtime.is_main and checkpointer.has_best())
        if has_best:
            if runtime.is_main:
                checkpointer.load_best(model)
            runtime.broadcast_module(model)
        elif best_cpu_state is not None:
            unwrap_model(model).load_state_dict(best_cpu_state)
    fire(callbacks, "on_fit_end", state)
    return result
