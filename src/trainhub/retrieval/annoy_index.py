"""Annoy-backed approximate index (extra: ``faiss``, which also installs annoy), imported only when used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainhub.retrieval.base import VectorIndex, merge_interest_results, read_meta, staged_dir, write_meta
from trainhub.retrieval.integrity import check_shape

__all__ = ["AnnoyIndex"]

_ANNOY_METRIC = {"ip": "dot", "cosine": "angular", "l2": "euclidean"}


def _annoy():
    try:
        import annoy
    except ImportError as err:
        raise ImportError("AnnoyIndex needs annoy; install the extra: pip install 'trainhub[annoy]'") from err
    return annoy


class AnnoyIndex(VectorIndex):
    """Annoy forest of random-projection trees.

    Annoy cannot add items after building, so vectors are kept and the forest is (re)built on
    the first search after an ``add``.

    Args:
        dim: vector size.
        metric: ``"ip"``, ``"cosine"`` or ``"l2"``; scores follow :mod:`trainhub.retrieval.base`.
        n_trees: trees to build (more: better recall, bigger index).
        search_k: nodes inspected per query (``-1``: annoy's default ``n_trees * k``).
        seed: seed of the tree construction.
    """

    kind = "annoy"

    def __init__(self, dim: int, metric: str = "ip", n_trees: int = 10, search_k: int = -1, seed: int = 0):
        super().__init__(dim, metric)
        _annoy()
        self.n_trees, self.search_k, self.seed = n_trees, search_k, seed
        self.vectors = np.empty((0, self.dim), dtype=np.float32)
        self.ids = np.empty(0, dtype=np.int64)
        self._forest = None

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, vectors: Any, ids: Any = None) -> None:
        vectors, ids = self._check_add(vectors, ids, len(self))
        self.vectors = np.concatenate([self.vectors, vectors])
        self.ids = np.concatenate([self.ids, ids])
        self._forest = None

    def _build(self):
        forest = _annoy().AnnoyIndex(self.dim, _ANNOY_METRIC[self.metric])
        forest.set_seed(self.seed)
        for position, vector in enumerate(self.vectors):  # annoy's API takes one item at a time
            forest.add_item(position, vector.tolist())
        forest.build(self.n_trees)
        return forest

    def search(self, queries: Any, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        flat, num_queries, interests = self._check_queries(queries, k)
        if self._forest is None:
            self._forest = self._build()
        scores = np.full((len(flat), k), -np.inf, dtype=np.float32)
        ids = np.full((len(flat), k), -1, dtype=np.int64)
        for row, query in enumerate(flat):
            positions, distances = self._forest.get_nns_by_vector(query.tolist(), k, self.search_k,
                                                                  include_distances=True)
            dist = np.asarray(distances, dtype=np.float32)
            if self.metric == "cosine":
                dist = 1 - dist ** 2 / 2  # angular distance sqrt(2 - 2 cos) -> cos
            elif self.metric == "l2":
                dist = -dist ** 2
            scores[row, :len(positions)] = dist
            ids[row, :len(positions)] = self.ids[np.asarray(positions, dtype=np.int64)]
        if interests > 1:
            scores, ids = merge_interest_results(scores, ids, num_queries, k)
        return self._result(scores, ids)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with staged_dir(path) as tmp:
            np.save(tmp / "vectors.npy", self.vectors, allow_pickle=False)
            np.save(tmp / "ids.npy", self.ids, allow_pickle=False)
            if self._forest is None:
                self._forest = self._build()
            self._forest.save(str(tmp / "index.ann"))
            write_meta(tmp, {"kind": self.kind, "dim": self.dim, "metric": self.metric, "n_trees": self.n_trees,
                              "search_k": self.search_k, "seed": self.seed, "count": len(self)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "AnnoyIndex":
        path = Path(path)
        meta = read_meta(path, cls.kind)
        index = cls(meta["dim"], meta["metric"], meta["n_trees"], meta["search_k"], meta["seed"])
        index.vectors = np.load(path / "vectors.npy", allow_pickle=False)
        index.ids = np.load(path / "ids.npy", allow_pickle=False)
        check_shape(path / "vectors.npy", meta, len(index.vectors), index.vectors.shape[1])
        check_shape(path / "ids.npy", meta, len(index.ids), index.dim)
        forest = _annoy().AnnoyIndex(index.dim, _ANNOY_METRIC[index.metric])
        forest.load(str(path / "index.ann"))
        check_shape(path / "index.ann", meta, forest.get_n_items(), forest.f)
        index._forest = forest
        return index
