"""The engine Task for multi-task text models: ``(task_name, batch)`` in, loss and ``eval_`` metrics out.

Metric keys (upstream's names): ``eval_<task>_loss``, ``eval_<task>_<head>_<metric>``, plus
``eval_loss`` (mean of the task losses, so the default ``metric_for_best_model`` exists) and
``eval_overall_f1`` (mean of every head's ``f1``, whenever some head has one).
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from trainhub.engine.task import StepOutput
from trainhub.text.config import TaskConfig
from trainhub.text.metrics import (
    IGNORE_INDEX,
    compute_classification_metrics,
    compute_multi_label_metrics,
    compute_ner_metrics,
    compute_regression_metrics,
)

__all__ = ["MultiTaskObjective", "metric_names_for", "expected_metric_keys"]

_METRICS = {
    "single_label_classification": ("accuracy", "precision", "recall", "f1", "macro_precision", "macro_recall",
                                    "macro_f1"),
    "multi_label_classification": ("accuracy", "precision", "recall", "f1", "macro_f1"),
    "ner": ("accuracy", "precision", "recall", "f1"),
    "regression": ("mse", "rmse", "mae"),
}


def metric_names_for(task_type: str) -> Tuple[str, ...]:
    return _METRICS[task_type]


def expected_metric_keys(tasks: Sequence[TaskConfig], prefix: str = "eval_") -> List[str]:
    """Every key ``compute_metrics`` can return for these tasks (to check ``metric_for_best_model`` early)."""
    keys = [f"{prefix}loss"]
    if any(t.type != "regression" for t in tasks):
        keys.append(f"{prefix}overall_f1")
    for t in tasks:
        keys.append(f"{prefix}{t.name}_loss")
        keys += [f"{prefix}{t.name}_{h.name}_{m}" for h in t.heads for m in metric_names_for(t.type)]
    return keys


def _unpack(batch: Any) -> Tuple[str, Dict[str, Any]]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], str)):
        raise TypeError("multi-task batches must be (task_name, batch) pairs, as MultiTaskLoader yields")
    return batch[0], batch[1]


class MultiTaskObjective:
    """Loss and metrics for :class:`~trainhub.text.model.MultiTaskModel` over several tasks.

    Args:
        tasks: the task configs (types, heads, label maps, multi-label thresholds).
        prefix: metric key prefix.
        extra_labels: ``{task: {head: [names]}}`` of eval/test labels the head has no class for
            (their ids follow the head's classes): scored as errors, left out of the loss.
    """

    def __init__(self, tasks: Sequence[TaskConfig], prefix: str = "eval_",
                 extra_labels: Optional[Dict[str, Dict[str, List[str]]]] = None):
        self.tasks = {t.name: t for t in tasks}
        self.prefix = prefix
        self.extra_labels = {k: dict(v) for k, v in (extra_labels or {}).items()}
        self._train_loss: Dict[str, List[float]] = {}
        self._tokens = [0, 0]  # real (non-padding) and padded tokens this epoch
        self._epoch_start: Optional[float] = None
        self._reset_eval()

    def _reset_eval(self) -> None:
        self._loss: Dict[str, List[float]] = {}
        self._preds: Dict[Tuple[str, str], List[np.ndarray]] = {}
        self._golds: Dict[Tuple[str, str], List[np.ndarray]] = {}

    def _forward(self, model: nn.Module, name: str, batch: Dict[str, Any], labels: Any = None) -> Dict[str, Any]:
        if name not in self.tasks:
            raise KeyError(f"batch for unknown task {name!r}; tasks are {list(self.tasks)}")
        return model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), task_id=name,
                     labels=batch.get("labels") if labels is None else labels,
                     token_type_ids=batch.get("token_type_ids"))

    def _scorable(self, name: str, labels: Any) -> Any:
        """Labels for the loss: ids of labels the head has no class for (eval/test only) are
        ignored (-100), the extra multi-label columns cut off."""
        extra = self.extra_labels.get(name)
        if not extra or not isinstance(labels, dict):
            return labels
        task = self.tasks[name]
        out = dict(labels)
        for head in task.heads:
            if head.name not in extra or head.name not in out:
                continue
            target, classes = out[head.name], int(head.num_labels or 0)
            if task.type == "multi_label_classification":
                out[head.name] = target[:, :classes]
            else:
                out[head.name] = torch.where(target >= classes, torch.full_like(target, IGNORE_INDEX), target)
        return out

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        name, inner = _unpack(batch)
        if self._epoch_start is None:
            self._epoch_start = time.perf_counter()
        ids, mask = inner["input_ids"], inner.get("attention_mask")
        self._tokens[0] += int(mask.sum()) if mask is not None else ids.numel()
        self._tokens[1] += ids.numel()
        out = self._forward(model, name, inner)
        n = int(ids.shape[0])
        stats = self._train_loss.setdefault(name, [0.0, 0])
        stats[0] += float(out["loss"].detach()) * n
        stats[1] += n
        return StepOutput(loss=out["loss"], batch_size=n)

    def epoch_logs(self) -> Dict[str, float]:
        """Per-task mean training loss of the epoch, real (non-padding) tokens per second from the
        epoch's first step to its end, and the fraction of computed tokens that were padding (then reset)."""
        logs = {f"train_{name}_loss": s / max(n, 1) for name, (s, n) in self._train_loss.items()}
        real, padded = self._tokens
        if self._epoch_start is not None and padded:
            logs["train_tokens_per_s"] = real / max(time.perf_counter() - self._epoch_start, 1e-9)
            logs["train_padding"] = 1.0 - real / padded
        self._train_loss, self._tokens, self._epoch_start = {}, [0, 0], None
        return logs

    @torch.no_grad()
    def validation_step(self, model: nn.Module, batch: Any) -> None:
        name, inner = _unpack(batch)
        out = self._forward(model, name, inner, labels=self._scorable(name, inner.get("labels")))
        n = int(inner["input_ids"].shape[0])
        self._loss.setdefault(name, []).extend([float(out["loss"]) * n, n])
        task = self.tasks[name]
        for head, logits in out["logits"].items():
            gold = inner["labels"][head].detach().cpu().numpy()
            logits = logits.detach().float().cpu()
            key = (name, head)
            if task.type == "ner":
                ids = logits.argmax(-1).numpy()  # [B, T]; rows are ragged after trimming
                for row_pred, row_gold in zip(ids, gold):
                    keep = row_gold != IGNORE_INDEX
                    self._preds.setdefault(key, []).append(row_pred[keep])
                    self._golds.setdefault(key, []).append(row_gold[keep])
            else:
                logits = logits.numpy()
                if task.type == "multi_label_classification" and gold.shape[-1] > logits.shape[-1]:
                    # labels the head has no output for are never predicted: false negatives
                    missing = np.full((logits.shape[0], gold.shape[-1] - logits.shape[-1]), -1e9, logits.dtype)
                    logits = np.concatenate([logits, missing], axis=-1)
                self._preds.setdefault(key, []).append(logits)
                self._golds.setdefault(key, []).append(gold)

    def sync_metrics(self, gather) -> None:
        """Merge every rank's losses, predictions and labels (rank order) before ``compute_metrics``."""
        parts = gather((self._loss, self._preds, self._golds))
        self._reset_eval()
        for loss, preds, golds in parts:
            for name, sums in loss.items():
                self._loss.setdefault(name, []).extend(sums)
            for key, rows in preds.items():
                self._preds.setdefault(key, []).extend(rows)
            for key, rows in golds.items():
                self._golds.setdefault(key, []).extend(rows)

    def metric_names(self) -> List[str]:
        return expected_metric_keys(list(self.tasks.values()), self.prefix)

    def compute_metrics(self) -> Dict[str, float]:
        p = self.prefix
        metrics: Dict[str, float] = {}
        task_losses, f1s = [], []
        for name, task in self.tasks.items():
            if name not in self._loss:
                continue
            sums = self._loss[name]
            loss = sum(sums[0::2]) / max(sum(sums[1::2]), 1)
            metrics[f"{p}{name}_loss"] = loss
            task_losses.append(loss)
            for head in task.heads:
                key = (name, head.name)
                if key not in self._preds:
                    continue
                preds, golds = self._preds[key], self._golds[key]
                if task.type == "ner":
                    names = list(head.labels or []) + self.extra_labels.get(name, {}).get(head.name, [])
                    label_map = dict(enumerate(names))
                    values = compute_ner_metrics(preds, golds, label_map)
                elif task.type == "single_label_classification":
                    values = compute_classification_metrics(np.concatenate(preds), np.concatenate(golds))
                elif task.type == "multi_label_classification":
                    values = compute_multi_label_metrics(np.concatenate(preds), np.concatenate(golds), head.threshold)
                else:
                    values = compute_regression_metrics(np.concatenate(preds), np.concatenate(golds))
                for metric, value in values.items():
                    metrics[f"{p}{name}_{head.name}_{metric}"] = value
                if "f1" in values:
                    f1s.append(values["f1"])
        if task_losses:
            metrics[f"{p}loss"] = float(np.mean(task_losses))
        if f1s:
            metrics[f"{p}overall_f1"] = float(np.mean(f1s))
        self._reset_eval()
        return metrics
