"""Top-K retrieval metrics: recall, precision, hit rate, NDCG and MRR at K, as floats.

Inputs are per-user ranked recommendation lists and per-user sets of relevant items, either as
dicts ``{user: [items]}`` (Torch-RecHub's ``topk_metrics`` layout) or as aligned sequences.
Every metric is averaged over users that have at least one relevant item; lists shorter than
``K`` are fine (missing slots count as misses).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import torch

__all__ = ["recall_at_k", "precision_at_k", "hit_rate_at_k", "ndcg_at_k", "mrr_at_k", "topk_metrics",
           "RankingMetrics"]


def _pairs(y_true: Any, y_pred: Any) -> list[tuple[set, list]]:
    if isinstance(y_true, Mapping):
        if not isinstance(y_pred, Mapping):
            raise TypeError("y_true is a dict of users, so y_pred must be one too")
        missing = [u for u in y_true if u not in y_pred]
        if missing:
            raise KeyError(f"y_pred has no recommendations for users {missing[:10]}")
        users = list(y_true)
        truth, preds = [y_true[u] for u in users], [y_pred[u] for u in users]
    else:
        truth, preds = list(y_true), list(y_pred)
        if len(truth) != len(preds):
            raise ValueError(f"y_true has {len(truth)} users but y_pred has {len(preds)}")
    out = []
    for t, p in zip(truth, preds):
        t = _as_list(t)
        if t:
            out.append((set(t), _as_list(p)))
    return out


def _as_list(v: Any) -> list:
    if isinstance(v, torch.Tensor):
        return v.reshape(-1).tolist()
    if hasattr(v, "tolist"):
        v = v.tolist()
    return list(v) if isinstance(v, Iterable) and not isinstance(v, (str, bytes)) else [v]


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"K must be a positive integer, got {k!r}")


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def recall_at_k(y_true, y_pred, k: int) -> float:
    """Mean over users of ``|relevant in top-K| / |relevant|``."""
    _check_k(k)
    return _mean([len(t.intersection(p[:k])) / len(t) for t, p in _pairs(y_true, y_pred)])


def precision_at_k(y_true, y_pred, k: int) -> float:
    """Mean over users of ``|relevant in top-K| / K``."""
    _check_k(k)
    return _mean([len(t.intersection(p[:k])) / k for t, p in _pairs(y_true, y_pred)])


def hit_rate_at_k(y_true, y_pred, k: int) -> float:
    """Fraction of users with at least one relevant item in their top-K."""
    _check_k(k)
    return _mean([float(bool(t.intersection(p[:k]))) for t, p in _pairs(y_true, y_pred)])


def ndcg_at_k(y_true, y_pred, k: int) -> float:
    """Mean over users of binary-relevance NDCG@K (DCG over the ideal DCG of ``min(|relevant|, K)`` hits)."""
    _check_k(k)
    scores = []
    for t, p in _pairs(y_true, y_pred):
        dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(p[:k]) if item in t)
        ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(t), k)))
        scores.append(dcg / ideal)
    return _mean(scores)


def mrr_at_k(y_true, y_pred, k: int) -> float:
    """Mean over users of ``1 / rank`` of the first relevant item in the top-K (0 if none)."""
    _check_k(k)
    scores = []
    for t, p in _pairs(y_true, y_pred):
        scores.append(next((1.0 / (rank + 1) for rank, item in enumerate(p[:k]) if item in t), 0.0))
    return _mean(scores)


_METRICS = {"recall": recall_at_k, "precision": precision_at_k, "hit_rate": hit_rate_at_k, "ndcg": ndcg_at_k,
            "mrr": mrr_at_k}


def topk_metrics(y_true, y_pred, topKs: Sequence[int] = (5,)) -> dict[str, float]:
    """Every metric at every K: ``{"recall@5": 0.31, "ndcg@5": ..., "hit_rate@5": ..., ...}``.

    Unlike Torch-RecHub's function of the same name, values are floats and ``hit_rate`` is the
    fraction of users with a hit.
    """
    return {f"{name}@{k}": fn(y_true, y_pred, k) for k in topKs for name, fn in _METRICS.items()}


class RankingMetrics:
    """Streaming top-K metrics for one held-out item per user (leave-one-out evaluation).

    ``update(topk_ids [U, >=K], target [U])`` per batch of users; ``compute()`` returns
    ``{"recall@K", "precision@K", "hit_rate@K", "ndcg@K", "mrr@K"}`` for every K. With one target
    per user, recall@K equals hit_rate@K.
    """

    higher_is_better = True  # every one of them

    def __init__(self, ks: Sequence[int] = (10,)):
        for k in ks:
            _check_k(k)
        self.ks = tuple(ks)
        self.reset()

    def reset(self) -> None:
        self._sums = {f"{name}@{k}": 0.0 for k in self.ks for name in _METRICS}
        self._users = 0

    @torch.no_grad()
    def update(self, topk_ids: torch.Tensor, target: torch.Tensor) -> None:
        topk_ids, target = torch.as_tensor(topk_ids).cpu(), torch.as_tensor(target).cpu().reshape(-1, 1)
        hits = topk_ids == target  # [U, K_max]
        for k in self.ks:
            h = hits[:, :k]
            found = h.any(dim=1).double()
            rank = h.double().argmax(dim=1)  # 0-based position of the hit (only used where found)
            self._sums[f"recall@{k}"] += float(found.sum())
            self._sums[f"hit_rate@{k}"] += float(found.sum())
            self._sums[f"precision@{k}"] += float(found.sum()) / k
            self._sums[f"ndcg@{k}"] += float((found / torch.log2(rank + 2)).sum())
            self._sums[f"mrr@{k}"] += float((found / (rank + 1)).sum())
        self._users += len(target)

    def sync(self, gather) -> None:
        """Sum every rank's totals (``gather`` as ``Runtime.all_gather_object``)."""
        parts = gather((self._sums, self._users))
        self._sums = {k: sum(p[0][k] for p in parts) for k in self._sums}
        self._users = sum(p[1] for p in parts)

    def compute(self) -> dict[str, float]:
        return {name: value / self._users if self._users else float("nan") for name, value in self._sums.items()}
