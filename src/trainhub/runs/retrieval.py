"""Retrieval quality of a matching model: embed every item, search the top K for each query row,
and count how often the row's own item is among them (Recall@K, NDCG@K).

:class:`RetrievalEvaluator` also works as a training callback: on every validation it adds
``recall_at_K`` / ``ndcg_at_K`` to the validation metrics, so they are logged on the same step
axis as the loss and early stopping can follow them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from trainhub.data.dataset import DictDataset, make_loader
from trainhub.metrics import ndcg_at_k, recall_at_k
from trainhub.retrieval import TorchIndex

__all__ = ["RetrievalEvaluator", "embed_rows"]


def embed_rows(embed: Callable[[nn.Module, str, Any], torch.Tensor], model: nn.Module, tower: str,
               x: Mapping[str, np.ndarray], batch_size: int) -> torch.Tensor:
    """``embed(model, "user"|"item", loader)`` over the rows of ``x`` -> ``[N, D]`` (or ``[N, K, D]``)."""
    loader = make_loader(DictDataset(dict(x)), batch_size)
    return embed(model, tower, loader)


class RetrievalEvaluator:
    """Recall@K and NDCG@K of query rows against a fixed item table.

    Args:
        embed: ``embed(model, tower, loader) -> tensor``, e.g. ``lambda m, t, dl:
            trainer.inference_embedding(m, t, dl)`` (it switches the model's tower mode).
        item_x: item-tower inputs of every candidate item (one row per item).
        item_ids: ``[M]`` encoded ids of those items.
        query_x: user-tower inputs of the query rows.
        truth: ``[Q]`` encoded id of each query row's item.
        topk: the K values; metric names are ``recall_at_K`` and ``ndcg_at_K``.
        batch_size: rows per embedding batch.
    """

    def __init__(self, embed, item_x: Mapping[str, np.ndarray], item_ids: np.ndarray,
                 query_x: Mapping[str, np.ndarray], truth: np.ndarray, topk: Sequence[int], batch_size: int = 1024):
        self.embed, self.item_x, self.query_x = embed, item_x, query_x
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.truth = np.asarray(truth, dtype=np.int64)
        self.topk, self.batch_size = sorted(int(k) for k in topk), batch_size
        self.model: nn.Module | None = None

    def compute(self, model: nn.Module) -> dict[str, float]:
        items = embed_rows(self.embed, model, "item", self.item_x, self.batch_size)  # [M, D]
        users = embed_rows(self.embed, model, "user", self.query_x, self.batch_size)  # [Q, D] or [Q, K, D]
        index = TorchIndex(dim=items.shape[-1], metric="ip")
        index.add(items, ids=torch.from_numpy(self.item_ids))
        _, top = index.search(users, k=min(max(self.topk), len(self.item_ids)))
        truth = [[t] for t in self.truth.tolist()]
        preds = top.tolist()
        out: dict[str, float] = {}
        for k in self.topk:
            out[f"recall_at_{k}"] = recall_at_k(truth, preds, k)
            out[f"ndcg_at_{k}"] = ndcg_at_k(truth, preds, k)
        return out

    # -- callback -------------------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        """The keys :meth:`on_validation_end` adds (so early stopping may monitor them)."""
        return [f"{name}_at_{k}" for k in self.topk for name in ("recall", "ndcg")]

    def on_validation_end(self, state: Any, metrics: dict[str, float]) -> None:
        if self.model is None:
            raise RuntimeError("RetrievalEvaluator used as a callback needs .model set to the trained model")
        metrics.update(self.compute(self.model))
