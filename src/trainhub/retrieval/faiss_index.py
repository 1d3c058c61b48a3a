"""Faiss-backed index (extra: ``faiss``), imported only when used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainhub.retrieval.base import VectorIndex, merge_interest_results, read_meta, staged_dir, write_meta
from trainhub.retrieval.integrity import check_shape

__all__ = ["FaissIndex"]


def _faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError("FaissIndex needs faiss; install the extra: pip install 'trainhub[faiss]'") from err
    return faiss


class FaissIndex(VectorIndex):
    """Faiss index with its own ids.

    Args:
        dim: vector size.
        metric: ``"ip"``, ``"cosine"`` (normalised inner product) or ``"l2"``.
        index_type: ``"flat"`` (exact) or ``"hnsw"`` (graph, approximate).
        hnsw_m: neighbours per node for ``"hnsw"``.
    """

    kind = "faiss"

    def __init__(self, dim: int, metric: str = "ip", index_type: str = "flat", hnsw_m: int = 32):
        super().__init__(dim, metric)
        if index_type not in ("flat", "hnsw"):
            raise ValueError(f"index_type must be 'flat' or 'hnsw', got {index_type!r}")
        faiss = _faiss()
        self.index_type, self.hnsw_m = index_type, hnsw_m
        faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if index_type == "flat":
            inner = faiss.IndexFlat(self.dim, faiss_metric)
        else:
            inner = faiss.IndexHNSWFlat(self.dim, hnsw_m, faiss_metric)
        self.index = faiss.IndexIDMap2(inner)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: Any, ids: Any = None) -> None:
        vectors, ids = self._check_add(vectors, ids, len(self))
        self.index.add_with_ids(vectors, ids)

    def search(self, queries: Any, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        flat, num_queries, interests = self._check_queries(queries, k)
        scores, ids = self.index.search(flat, k)
        if self.metric == "l2":
            scores = -scores  # faiss returns squared distances
        scores = np.where(ids < 0, -np.inf, scores)
        if interests > 1:
            scores, ids = merge_interest_results(scores, ids, num_queries, k)
        return self._result(scores, ids)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with staged_dir(path) as tmp:
            _faiss().write_index(self.index, str(tmp / "index.faiss"))
            write_meta(tmp, {"kind": self.kind, "dim": self.dim, "metric": self.metric, "index_type": self.index_type,
                              "hnsw_m": self.hnsw_m, "count": len(self)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FaissIndex":
        path = Path(path)
        meta = read_meta(path, cls.kind)
        index = cls(meta["dim"], meta["metric"], meta["index_type"], meta["hnsw_m"])
        index.index = _faiss().read_index(str(path / "index.faiss"))
        check_shape(path / "index.faiss", meta, len(index), int(index.index.d))
        return index
