"""Torch-RecHub's ``Annoy`` / ``Faiss`` engines (``torch_rechub.utils.match``) as thin adapters.

Each adapter keeps Torch-RecHub's constructor, ``fit(X)``, ``query(v, n)`` and ``set_query_arguments``,
and delegates to a trainhub index (:class:`~trainhub.retrieval.AnnoyIndex`,
:class:`~trainhub.retrieval.FaissIndex`), converting its "higher is better" scores back into the
engine's own distances. New code should use the indexes directly (``add`` / ``search`` on whole
batches, multi-interest queries, ``save`` / ``load``).

Adding an engine: subclass :class:`EngineAdapter`, build the trainhub index in ``_make_index(dim)``
and map its scores in ``_distances(scores)``; ``fit`` and ``query`` come from the base class.

Example (Torch-RecHub's evaluation loop, unchanged):
    >>> annoy = Annoy(n_trees=10)
    >>> annoy.fit(item_embedding)                       # [N, D] tensor or array
    >>> ids, distances = annoy.query(v=user_embedding[0], n=10)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainhub.retrieval.base import VectorIndex, as_float_array

__all__ = ["EngineAdapter", "Annoy", "Faiss"]


class EngineAdapter:
    """Torch-RecHub engine API over a trainhub index: ``fit(X)`` then ``query(v, n) -> (ids, distances)``.

    Subclasses set ``_make_index(dim)`` and ``_distances(scores)``. Ids are row positions of the
    fitted matrix, as in Torch-RecHub.
    """

    index: VectorIndex | None = None

    def _make_index(self, dim: int) -> VectorIndex:
        raise NotImplementedError

    def _distances(self, scores: np.ndarray) -> np.ndarray:
        """The engine's distance (or similarity) for each trainhub score."""
        raise NotImplementedError

    def fit(self, X: Any) -> None:
        """Index the rows of ``X`` (``[N, D]`` tensor or array); row ``i`` gets id ``i``."""
        vectors = as_float_array(X, "X")
        self.index = self._make_index(vectors.shape[1])
        self.index.add(vectors)

    def _search(self, v: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            raise RuntimeError(f"{type(self).__name__}.query() before fit(): call fit(item_embeddings) first")
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        queries = np.asarray(v, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2:
            raise ValueError(f"query vectors must be [D] or [Q, D], got shape {queries.shape}; query a "
                             "multi-interest user one interest at a time")
        scores, ids = self.index.search(queries, int(n))
        return ids.numpy(), self._distances(scores.numpy())


class Annoy(EngineAdapter):
    """Torch-RecHub's ``Annoy(metric='angular', n_trees=10, search_k=-1)`` over :class:`AnnoyIndex`.

    ``query(v, n)`` takes one vector and returns two lists: the ``n`` nearest row ids, nearest
    first, and Annoy's distances (``angular``: ``sqrt(2 - 2 cos)``; ``euclidean``: L2 distance;
    ``dot``: the inner product, larger is nearer). Trees are built with a fixed seed (0), so
    results repeat from run to run.

    Args:
        metric: ``"angular"``, ``"euclidean"`` or ``"dot"``.
        n_trees: trees to build.
        search_k: nodes inspected per query (``-1``: Annoy's default).
    """

    _METRICS = {"angular": "cosine", "euclidean": "l2", "dot": "ip"}

    def __init__(self, metric: str = "angular", n_trees: int = 10, search_k: int = -1):
        if metric not in self._METRICS:
            raise ValueError(f"Annoy metric {metric!r} is not supported; use one of {sorted(self._METRICS)} "
                             "(manhattan and hamming have no trainhub index)")
        from trainhub.retrieval.annoy_index import _annoy

        _annoy()  # a missing annoy fails here, with the extra to install
        self._metric, self._n_trees, self._search_k = metric, n_trees, search_k

    def _make_index(self, dim: int) -> VectorIndex:
        from trainhub.retrieval.annoy_index import AnnoyIndex

        return AnnoyIndex(dim, self._METRICS[self._metric], n_trees=self._n_trees, search_k=self._search_k)

    def _distances(self, scores: np.ndarray) -> np.ndarray:
        if self._metric == "angular":
            return np.sqrt(np.clip(2.0 - 2.0 * scores, 0.0, None))
        if self._metric == "euclidean":
            return np.sqrt(np.clip(-scores, 0.0, None))
        return scores

    def set_query_arguments(self, search_k: int) -> None:
        """Nodes inspected per query (more: better recall, slower)."""
        self._search_k = search_k
        if self.index is not None:
            self.index.search_k = search_k

    def query(self, v: Any, n: int) -> tuple[list[int], list[float]]:
        """``(ids, distances)`` of the ``n`` rows nearest to the vector ``v``, as lists."""
        ids, dist = self._search(v, n)
        keep = ids[0] >= 0  # fewer than n rows indexed: Annoy returns fewer
        return ids[0][keep].tolist(), dist[0][keep].tolist()

    def __str__(self) -> str:
        return f"Annoy(n_trees={self._n_trees}, search_k={self._search_k})"


class Faiss(EngineAdapter):
    """Torch-RecHub's ``Faiss(dim, index_type='flat', nlist=100, m=32, metric='l2')`` over :class:`FaissIndex`.

    ``query(v, n)`` takes one vector ``[D]`` or a batch ``[Q, D]`` and returns ``(ids, distances)``
    as nested lists ``[Q][n]`` (Faiss' layout): squared L2 distances for ``metric="l2"``, inner
    products for ``"ip"``.

    Args:
        dim: vector size.
        index_type: ``"flat"`` (exact) or ``"hnsw"``. ``"ivf"`` is not offered: use ``"hnsw"``
            for an approximate index, or ``"flat"``.
        nlist: accepted for Torch-RecHub's signature (IVF only).
        m: neighbours per node for ``"hnsw"``.
        metric: ``"l2"`` or ``"ip"``.
    """

    _METRICS = {"l2": "l2", "ip": "ip"}

    def __init__(self, dim: int, index_type: str = "flat", nlist: int = 100, m: int = 32, metric: str = "l2"):
        self.dim, self.index_type, self.nlist, self.m = int(dim), index_type.lower(), nlist, m
        self.metric = metric.lower()
        if self.metric not in self._METRICS:
            raise ValueError(f"Faiss metric {metric!r} is not supported; use 'l2' or 'ip'")
        if self.index_type not in ("flat", "hnsw"):
            raise ValueError(f"Faiss index_type {index_type!r} is not supported; use 'flat' (exact) or 'hnsw' "
                             "(approximate)")
        self.index = self._make_index(self.dim)  # built now, as in Torch-RecHub: fit() may be called repeatedly

    def _make_index(self, dim: int) -> VectorIndex:
        from trainhub.retrieval.faiss_index import FaissIndex

        if dim != self.dim:
            raise ValueError(f"vectors have dimension {dim}, this Faiss engine was built for dim={self.dim}")
        return FaissIndex(dim, self._METRICS[self.metric], index_type=self.index_type, hnsw_m=self.m)

    def fit(self, X: Any) -> None:
        """Add the rows of ``X`` to the index (ids continue from the rows already added)."""
        vectors = as_float_array(X, "X")
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {vectors.shape[1]}, this Faiss engine was built for "
                             f"dim={self.dim}")
        self.index.add(vectors)

    def _distances(self, scores: np.ndarray) -> np.ndarray:
        return -scores if self.metric == "l2" else scores  # trainhub scores l2 as -squared distance

    def set_query_arguments(self, nprobe: int | None = None, efSearch: int | None = None) -> None:  # noqa: N803
        """``efSearch`` for ``"hnsw"`` (``nprobe`` is IVF's and has no effect here)."""
        if efSearch is None or self.index_type != "hnsw":
            return
        import faiss

        inner = faiss.downcast_index(self.index.index)
        while not hasattr(inner, "hnsw") and hasattr(inner, "index"):  # unwrap the id map
            inner = faiss.downcast_index(inner.index)
        inner.hnsw.efSearch = int(efSearch)

    def query(self, v: Any, n: int) -> tuple[list[list[int]], list[list[float]]]:
        """``(ids, distances)`` of the ``n`` nearest rows per query vector, as ``[Q][n]`` lists."""
        ids, dist = self._search(v, n)
        return ids.tolist(), dist.tolist()

    def save_index(self, filepath: str) -> None:
        """Save the index (a folder, see :meth:`FaissIndex.save`)."""
        self.index.save(filepath)

    def load_index(self, filepath: str) -> None:
        """Load an index saved by :meth:`save_index`."""
        from trainhub.retrieval.faiss_index import FaissIndex

        self.index = FaissIndex.load(filepath)

    def __str__(self) -> str:
        return f"Faiss(index_type={self.index_type}, dim={self.dim}, metric={self.metric}, ntotal={len(self.index)})"
