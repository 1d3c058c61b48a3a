"""Torch-RecHub's ``torch_rechub.basic.metric`` names with its output format.

``topk_metrics`` here returns what Torch-RecHub's does, ``{"NDCG": ["NDCG@10: 0.1234"], "MRR": [...],
"Recall": [...], "Hit": [...], "Precision": [...]}`` (strings, one per K, rounded to 4 places), so
scripts that print or parse it keep working. :func:`trainhub.metrics.topk_metrics` is the native
form: floats keyed ``"recall@10"``, with ``hit_rate`` the share of users with a hit.
``auc_score``, ``gauc_score`` and ``log_loss`` are trainhub's (same arguments and values, except that
one-class users are skipped by ``gauc_score`` instead of poisoning it).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from trainhub.metrics.classification import auc_score, gauc_score, log_loss

__all__ = ["auc_score", "gauc_score", "log_loss", "topk_metrics"]


def topk_metrics(y_true: dict, y_pred: dict, topKs: Sequence[int] | None = None) -> dict[str, list[str]]:  # noqa: N803
    """Top-K metrics in Torch-RecHub's format and definitions.

    Args:
        y_true: ``{user: items the user interacted with}``.
        y_pred: ``{user: recommended items, best first}`` (every user of ``y_true``).
        topKs: list or tuple of K values (default ``[5]``).

    Returns:
        ``{"NDCG": [...], "MRR": [...], "Recall": [...], "Hit": [...], "Precision": [...]}``, each a
        list of ``"<Name>@K: value"`` strings. Averages are over all users of ``y_true``;
        ``Hit`` is hits over all ground-truth items (micro recall), as in Torch-RecHub. A user
        with fewer than K recommendations counts the missing ones as misses (Torch-RecHub
        raised IndexError).
    """
    topKs = [5] if topKs is None else topKs
    if not isinstance(topKs, (tuple, list)):
        raise ValueError(f"topKs must be a list or tuple of ints, got {type(topKs).__name__}")
    missing = [u for u in y_true if u not in y_pred]
    if missing or len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred must hold the same users; {len(missing)} user(s) of y_true have no "
                         f"prediction (e.g. {missing[:3]})" if missing else
                         f"y_pred holds {len(y_pred)} users, y_true {len(y_true)}")
    users = list(y_true)
    results: dict[str, list[str]] = defaultdict(list)
    for k in topKs:
        ndcg = mrr = hits = recall = precision = 0.0
        gts = 0
        for u in users:
            truth = _as_list(y_true[u])
            if not truth:
                continue
            truth_set = set(truth)
            pred = _as_list(y_pred[u])[:k]
            user_hits = [j for j, item in enumerate(pred) if item in truth_set]
            dcg = sum(1.0 / np.log2(j + 2) for j in user_hits)
            idcg = sum(1.0 / np.log2(j + 2) for j in range(min(k, len(truth))))
            gts += len(truth)
            hits += len(user_hits)
            mrr += 1.0 / (1 + user_hits[0]) if user_hits else 0.0
            recall += len(user_hits) / len(truth)
            precision += len(user_hits) / k
            ndcg += dcg / idcg if idcg else 0.0
        n = len(users)
        values = {"NDCG": ndcg / n, "MRR": mrr / n, "Recall": recall / n,
                  "Hit": hits / gts if gts else 0.0, "Precision": precision / n}
        for name, value in values.items():
            results[name].append(f"{name}@{k}: {round(value, 4)}")
    return results


def _as_list(values: Any) -> list:
    if hasattr(values, "tolist"):
        values = values.tolist()
    return list(values) if isinstance(values, (list, tuple)) else [values]
