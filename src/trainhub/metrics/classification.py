"""Binary-classification metrics: AUC, group AUC, log loss.

Functional forms take array-likes; streaming forms (``update`` per batch, ``compute`` at the end,
``reset``) accumulate on the CPU so evaluation never holds device memory. Under several processes
``sync(gather)`` merges every rank's state (``gather(obj)`` returns each rank's ``obj`` in rank
order, e.g. ``Runtime.all_gather_object``), after which ``compute`` covers all ranks' rows exactly.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from trainhub.metrics.undefined import report_undefined

__all__ = ["auc_score", "gauc_score", "log_loss", "BinaryAUC", "LogLoss", "GroupAUC"]

log = logging.getLogger(__name__)


def _np(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy().reshape(-1)
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _binary_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """ROC AUC of 0/1 labels as the Mann-Whitney statistic, ties counted half (equal to
    scikit-learn's ``roc_auc_score``): one sort, no per-call validation overhead, no import cost."""
    order = np.argsort(y_score, kind="stable")
    sorted_scores = y_score[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    counts = np.diff(np.r_[starts, len(sorted_scores)])
    mean_rank = starts + (counts + 1) / 2.0  # 1-based average rank of each run of tied scores
    ranks = np.empty(len(y_score))
    ranks[order] = np.repeat(mean_rank, counts)
    positive = y_true > 0.5
    n_pos = int(positive.sum())
    n_neg = len(y_true) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc_score(y_true, y_score) -> float:
    """ROC AUC; NaN (with a warning giving the class counts) when only one class is present."""
    y_true, y_score = _np(y_true), _np(y_score)
    if np.unique(y_true).size < 2:
        if len(y_true) == 0:
            report_undefined("AUC is undefined on no rows")
        else:
            n_pos = int((y_true > 0.5).sum())
            report_undefined(f"AUC is undefined with a single class in the labels "
                             f"({n_pos} positive, {len(y_true) - n_pos} negative rows)")
        return float("nan")
    return _binary_auc(y_true, y_score)


def gauc_score(y_true, y_score, groups, weights=None) -> float:
    """Group AUC: per-group AUC averaged with weights (default: group size).

    Groups (users) whose labels hold one class only are skipped, so they never turn the result
    into NaN. Returns NaN only when no group has both classes.
    """

    y_true, y_score = _np(y_true), _np(y_score)
    groups = np.asarray(groups.cpu() if isinstance(groups, torch.Tensor) else groups).reshape(-1)
    if not (len(y_true) == len(y_score) == len(groups)):
        raise ValueError(
            f"gauc_score: lengths differ: y_true {len(y_true)}, y_score {len(y_score)}, groups {len(groups)}"
        )
    order = np.argsort(groups, kind="stable")
    g_sorted = groups[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)]
    total, weight_sum = 0.0, 0.0
    for s, e in zip(starts, ends):
        idx = order[s:e]
        labels = y_true[idx]
        if labels.min() == labels.max():
            continue
        w = float(e - s) if weights is None else float(weights[g_sorted[s]])
        total += w * _binary_auc(labels, y_score[idx])
        weight_sum += w
    if weight_sum == 0:
        n_pos = int((y_true > 0.5).sum())
        report_undefined(f"GAUC is undefined: none of the {len(starts)} groups has both classes "
                         f"({n_pos} positive, {len(y_true) - n_pos} negative rows)")
        return float("nan")
    return total / weight_sum


def log_loss(y_true, y_prob) -> float:
    """Binary cross-entropy of probabilities (clipped to machine epsilon, as scikit-learn does)."""
    y_true, y_prob = _np(y_true), _np(y_prob)
    eps = np.finfo(np.float64).eps
    p = np.clip(y_prob, eps, 1 - eps)
    return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))


class _Collect:
    """Streaming base: keeps CPU copies of each batch's predictions and labels."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._scores: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def update(self, y_score: torch.Tensor, y_true: torch.Tensor) -> None:
        self._scores.append(y_score.detach().reshape(-1).float().cpu())
        self._labels.append(y_true.detach().reshape(-1).float().cpu())

    def sync(self, gather) -> None:
        """Replace this rank's rows by every rank's rows (rank order)."""
        parts = gather(self._cat())
        self._scores = [p[0] for p in parts]
        self._labels = [p[1] for p in parts]

    def _cat(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._scores:
            return torch.empty(0), torch.empty(0)
        return torch.cat(self._scores), torch.cat(self._labels)


class BinaryAUC(_Collect):
    """Streaming ROC AUC (exact: it keeps every score)."""

    higher_is_better = True

    def compute(self) -> float:
        scores, labels = self._cat()
        return auc_score(labels, scores)


class LogLoss:
    """Streaming mean log loss; keeps only a running sum."""

    higher_is_better = False

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sum, self._count = 0.0, 0

    def update(self, y_prob: torch.Tensor, y_true: torch.Tensor) -> None:
        p = y_prob.detach().reshape(-1).double().cpu().clamp(np.finfo(np.float64).eps, 1 - np.finfo(np.float64).eps)
        y = y_true.detach().reshape(-1).double().cpu()
        self._sum += float(-(y * p.log() + (1 - y) * (1 - p).log()).sum())
        self._count += len(y)

    def sync(self, gather) -> None:
        """Sum the running totals of every rank."""
        parts = gather((self._sum, self._count))
        self._sum, self._count = sum(p[0] for p in parts), sum(p[1] for p in parts)

    def compute(self) -> float:
        if not self._count:
            report_undefined("log loss is undefined on no rows")
            return math.nan
        return self._sum / self._count


class GroupAUC(_Collect):
    """Streaming GAUC: ``update(scores, labels, groups)``."""

    higher_is_better = True

    def reset(self) -> None:
        super().reset()
        self._groups: list[torch.Tensor] = []

    def update(self, y_score: torch.Tensor, y_true: torch.Tensor, groups: torch.Tensor) -> None:  # type: ignore[override]
        super().update(y_score, y_true)
        self._groups.append(groups.detach().reshape(-1).cpu())

    def sync(self, gather) -> None:
        """Replace this rank's rows (scores, labels, groups) by every rank's rows."""
        groups = torch.cat(self._groups) if self._groups else torch.empty(0, dtype=torch.long)
        parts = gather((*self._cat(), groups))
        self._scores, self._labels, self._groups = ([p[i] for p in parts] for i in range(3))

    def compute(self) -> float:
        scores, labels = self._cat()
        if not len(labels):
            report_undefined("GAUC is undefined on no rows")
            return float("nan")
        return gauc_score(labels, scores, torch.cat(self._groups).numpy())
