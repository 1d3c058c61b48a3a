"""The engine Task for multi-task text models: ``(task_name, batch)`` in, loss and ``eval_`` metrics out.

Metric keys (upstream's names): ``eval_<task>_loss``, ``eval_<task>_<head>_<metric>``, plus
``eval_loss`` (mean of the task losses, so the default ``metric_for_best_model`` exists) and
``eval_overall_f1`` (mean of every head's ``f1``, whenever some head has one). Each task's kind
(:mod:`trainhub.text.kinds`) names its ``<metric>`` keys and says which way they improve; the key
list and directions here are derived from those declarations.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from trainhub.engine.task import StepOutput
from trainhub.text.config import TaskConfig
from trainhub.text.kinds import kind_for

__all__ = ["MultiTaskObjective", "metric_names_for", "expected_metric_keys", "metric_directions"]


def metric_names_for(task_type: str) -> tuple[str, ...]:
    return kind_for(task_type).metric_names


def metric_directions(tasks: Sequence[TaskConfig], prefix: str = "eval_") -> dict[str, bool]:
    """Every key ``compute_metrics`` can return for these tasks -> whether higher is better."""
    kinds = {t.name: kind_for(t.type) for t in tasks}
    keys = {f"{prefix}loss": False}
    if any("f1" in k.metric_names for k in kinds.values()):
        keys[f"{prefix}overall_f1"] = True
    for t in tasks:
        keys[f"{prefix}{t.name}_loss"] = False
        for h in t.heads:
            keys.update({f"{prefix}{t.name}_{h.name}_{m}": kinds[t.name].higher_is_better(m)
                         for m in kinds[t.name].metric_names})
    return keys


def expected_metric_keys(tasks: Sequence[TaskConfig], prefix: str = "eval_") -> list[str]:
    """Every key ``compute_metrics`` can return for these tasks (to check ``metric_for_best_model`` early)."""
    return list(metric_directions(tasks, prefix))


def _unpack(batch: Any) -> tuple[str, dict[str, Any]]:
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
                 extra_labels: dict[str, dict[str, list[str]]] | None = None):
        self.tasks = {t.name: t for t in tasks}
        self.kinds = {t.name: kind_for(t.type) for t in tasks}
        self.prefix = prefix
        self.extra_labels = {k: dict(v) for k, v in (extra_labels or {}).items()}
        self._train_loss: dict[str, list[float]] = {}
        self._tokens = [0, 0]  # real (non-padding) and padded tokens this epoch
        self._epoch_start: float | None = None
        self._reset_eval()

    def _reset_eval(self) -> None:
        self._loss: dict[str, list[float]] = {}
        self._preds: dict[tuple[str, str], list[np.ndarray]] = {}
        self._golds: dict[tuple[str, str], list[np.ndarray]] = {}

    def _forward(self, model: nn.Module, name: str, batch: dict[str, Any], labels: Any = None) -> dict[str, Any]:
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
        kind = self.kinds[name]
        out = dict(labels)
        for head in task.heads:
            if head.name not in extra or head.name not in out:
                continue
            out[head.name] = kind.scorable(out[head.name], int(head.num_labels or 0))
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

    def epoch_logs(self) -> dict[str, float]:
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
        kind = self.kinds[name]
        for head, logits in out["logits"].items():
            gold = inner["labels"][head].detach().cpu().numpy()
            key = (name, head)
            kind.collect(logits.detach().float().cpu(), gold, self._preds.setdefault(key, []),
                         self._golds.setdefault(key, []))

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

    def metric_names(self) -> list[str]:
        return expected_metric_keys(list(self.tasks.values()), self.prefix)

    def higher_is_better(self, name: str) -> bool | None:
        return metric_directions(list(self.tasks.values()), self.prefix).get(name)

    def compute_metrics(self) -> dict[str, float]:
        p = self.prefix
        metrics: dict[str, float] = {}
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
                names = list(head.labels or []) + self.extra_labels.get(name, {}).get(head.name, [])
                values = self.kinds[name].score(self._preds[key], self._golds[key], head, names)
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
