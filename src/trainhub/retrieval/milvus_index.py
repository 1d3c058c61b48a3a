"""Milvus-backed index (extra: ``milvus``): embedded milvus-lite by default, a server when given a URI.

``MilvusIndex`` follows the :class:`~trainhub.retrieval.base.VectorIndex` interface. ``Milvus`` is
Torch-RecHub's ``utils.match.Milvus`` (``Milvus(dim, host, port)``, ``fit(X)``, ``query(v, n)``)
on top of it. pymilvus is imported only when one is built.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainhub.retrieval.base import (
    VectorIndex,
    as_float_array,
    merge_interest_results,
    read_meta,
    staged_dir,
    write_meta,
)
from trainhub.retrieval.integrity import check_shape

__all__ = ["MilvusIndex", "Milvus"]

log = logging.getLogger(__name__)

_ID, _VECTOR = "id", "vector"
_MILVUS_METRIC = {"ip": "IP", "cosine": "IP", "l2": "L2"}  # cosine: vectors are normalised on the way in
_INSERT_ROWS = 10_000  # rows per insert request (a request has a size limit)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


def _pymilvus():
    try:
        import pymilvus
    except ImportError as err:
        raise ImportError("MilvusIndex needs pymilvus (and milvus-lite for the embedded mode); install the extra: "
                          "pip install 'trainhub[milvus]'") from err
    return pymilvus


class MilvusIndex(VectorIndex):
    """Vectors in a Milvus collection.

    Args:
        dim: vector size.
        metric: ``"ip"``, ``"cosine"`` or ``"l2"``; scores follow :mod:`trainhub.retrieval.base`
            (``"l2"`` gives negated squared distances).
        uri: ``None`` runs an embedded milvus-lite database in a temporary file, removed by
            :meth:`close`; a path ending in ``.db`` is a milvus-lite file that persists; an
            ``http://host:port`` URI is a Milvus server.
        collection: collection name. An existing collection of that name is dropped unless
            ``keep_existing`` (then it is reused as is, and must have this ``dim``).
        index_type: Milvus index, ``"FLAT"`` (exact; the default) or, on a server, ``"HNSW"``,
            ``"IVF_FLAT"``, ... with ``index_params`` / ``search_params`` passed through.
        token: credentials for a server (``"user:password"`` or an API key).
        timeout: seconds to wait for the server.

    Example:
        >>> with MilvusIndex(dim=64) as index:  # embedded, nothing to install but the extra
        ...     index.add(item_embeddings, ids=item_ids)
        ...     scores, ids = index.search(user_embeddings, k=50)
    """

    kind = "milvus"

    def __init__(self, dim: int, metric: str = "ip", uri: str | Path | None = None, collection: str = "trainhub",
                 index_type: str = "FLAT", index_params: dict | None = None, search_params: dict | None = None,
                 token: str | None = None, timeout: float = 10.0, keep_existing: bool = False):
        super().__init__(dim, metric)
        pymilvus = _pymilvus()
        if not _NAME.match(collection):
            raise ValueError(f"collection must be letters, digits and underscores (not first), got {collection!r}")
        self._tmpdir = None
        if uri is None:
            self._tmpdir = tempfile.mkdtemp(prefix="trainhub-milvus-")
            uri = str(Path(self._tmpdir) / "index.db")
        self.uri, self.collection = str(uri), collection
        self.index_type = index_type
        self.index_params, self.search_params = dict(index_params or {}), dict(search_params or {})
        try:
            self.client = pymilvus.MilvusClient(uri=self.uri, token=token or "", timeout=timeout)
        except Exception as err:
            self._remove_tmpdir()
            hint = "" if self.uri.endswith(".db") else \
                "; start the server, or pass uri='file.db' for embedded milvus-lite"
            raise ConnectionError(f"cannot open Milvus at {self.uri}: {err}{hint}") from err
        if self.client.has_collection(collection) and not keep_existing:
            self.client.drop_collection(collection)
        if self.client.has_collection(collection):
            self._count = int(self.client.get_collection_stats(collection)["row_count"])
            self._check_existing_dim()
        else:
            self._create(pymilvus)
            self._count = 0

    def _create(self, pymilvus) -> None:
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_ID, pymilvus.DataType.INT64, is_primary=True)
        schema.add_field(_VECTOR, pymilvus.DataType.FLOAT_VECTOR, dim=self.dim)
        params = self.client.prepare_index_params()
        params.add_index(_VECTOR, index_type=self.index_type, metric_type=_MILVUS_METRIC[self.metric],
                         params=self.index_params)
        self.client.create_collection(self.collection, schema=schema, index_params=params)

    def _check_existing_dim(self) -> None:
        fields = self.client.describe_collection(self.collection).get("fields", [])
        for field in fields:
            if field.get("name") == _VECTOR and int(field.get("params", {}).get("dim", self.dim)) != self.dim:
                raise ValueError(f"collection {self.collection!r} at {self.uri} holds vectors of dimension "
                                 f"{field['params']['dim']}, not {self.dim}")

    def __len__(self) -> int:
        return self._count

    def add(self, vectors: Any, ids: Any = None) -> None:
        vectors, ids = self._check_add(vectors, ids, len(self))
        for start in range(0, len(vectors), _INSERT_ROWS):
            rows = [{_ID: int(i), _VECTOR: v} for i, v in
                    zip(ids[start:start + _INSERT_ROWS], vectors[start:start + _INSERT_ROWS])]
            self.client.insert(self.collection, rows)
        self._count += len(vectors)

    def search(self, queries: Any, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        flat, num_queries, interests = self._check_queries(queries, k)
        self.client.load_collection(self.collection)
        params = {"metric_type": _MILVUS_METRIC[self.metric], "params": dict(self.search_params)}
        hits = self.client.search(self.collection, data=[q for q in flat], limit=k, anns_field=_VECTOR,
                                  search_params=params, output_fields=[_ID])
        scores = np.full((len(flat), k), -np.inf, dtype=np.float32)
        ids = np.full((len(flat), k), -1, dtype=np.int64)
        for row, found in enumerate(hits):
            for col, hit in enumerate(list(found)[:k]):
                ids[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        if self.metric == "l2":
            scores = np.where(ids >= 0, -scores, -np.inf)  # Milvus returns squared distances
        if interests > 1:
            scores, ids = merge_interest_results(scores, ids, num_queries, k)
        return self._result(scores, ids)

    def vectors_and_ids(self, batch_size: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
        """Every stored vector ``[N, D]`` and id ``[N]``, read back from Milvus."""
        iterator = self.client.query_iterator(self.collection, batch_size=batch_size, output_fields=[_ID, _VECTOR])
        vectors, ids = [], []
        try:
            while rows := iterator.next():
                ids.extend(int(r[_ID]) for r in rows)
                vectors.extend(r[_VECTOR] for r in rows)
        finally:
            iterator.close()
        return np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim), np.asarray(ids, dtype=np.int64)

    def save(self, path: str | Path) -> Path:
        """Write the vectors and ids as a folder (like :class:`~trainhub.retrieval.TorchIndex`), with
        checksums; :meth:`load` puts them into a new collection."""
        path = Path(path)
        vectors, ids = self.vectors_and_ids()
        check_shape(f"collection {self.collection!r} at {self.uri}", {"count": len(self)}, len(ids), self.dim)
        with staged_dir(path) as tmp:
            np.save(tmp / "vectors.npy", vectors, allow_pickle=False)
            np.save(tmp / "ids.npy", ids, allow_pickle=False)
            write_meta(tmp, {"kind": self.kind, "dim": self.dim, "metric": self.metric, "count": len(ids),
                              "index_type": self.index_type, "index_params": self.index_params,
                              "search_params": self.search_params})
        return path

    @classmethod
    def load(cls, path: str | Path, uri: str | Path | None = None, collection: str = "trainhub",
             **kwargs: Any) -> "MilvusIndex":
        """Verify a saved folder and insert it into a fresh collection at ``uri`` (default: embedded)."""
        path = Path(path)
        meta = read_meta(path, cls.kind)
        vectors = np.load(path / "vectors.npy", allow_pickle=False)
        ids = np.load(path / "ids.npy", allow_pickle=False)
        check_shape(path / "vectors.npy", meta, len(vectors), vectors.shape[1])
        check_shape(path / "ids.npy", meta, len(ids), meta["dim"])
        index = cls(meta["dim"], meta["metric"], uri=uri, collection=collection, index_type=meta["index_type"],
                    index_params=meta.get("index_params"), search_params=meta.get("search_params"), **kwargs)
        index.add(vectors, ids)
        return index

    def close(self) -> None:
        """Close the connection; an embedded temporary database is deleted."""
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            client.close()
        self._remove_tmpdir()

    def _remove_tmpdir(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> "MilvusIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Milvus:
    """Torch-RecHub's ``utils.match.Milvus``: ``fit(X)`` stores ``X`` with ids ``0..N-1``,
    ``query(v, n)`` returns ``(ids, distances)`` as lists (one list per query row), distances
    being squared Euclidean ones, smallest first.

    Args:
        dim: vector size.
        host / port: the Milvus server, as in Torch-RecHub.
        uri: instead of host/port: a ``.db`` file for embedded milvus-lite, or a server URI.
        metric: ``"l2"`` as in Torch-RecHub (``query`` then returns squared distances), or ``"ip"``
            / ``"cosine"`` (``query`` returns similarities, largest first).
        index_type: ``"FLAT"`` (exact). Torch-RecHub builds ``IVF_FLAT`` with ``nlist=128`` and
            searches ``nprobe=16``, an approximate search; pass ``index_type="IVF_FLAT",
            index_params={"nlist": 128}, search_params={"nprobe": 16}`` to have that.
        **kwargs: other :class:`MilvusIndex` arguments (``collection``, ``token``, ...).

    Torch-RecHub names its collection ``"rechub"`` and drops an existing one; so does this.
    """

    def __init__(self, dim: int = 64, host: str = "localhost", port: str | int = "19530", *,
                 uri: str | Path | None = None, metric: str = "l2", index_type: str = "FLAT", **kwargs: Any):
        self.dim = dim
        kwargs.setdefault("collection", "rechub")
        self.index = MilvusIndex(dim, metric, uri=uri if uri is not None else f"http://{host}:{port}",
                                 index_type=index_type, **kwargs)

    def fit(self, X: Any) -> None:
        """Insert ``X [N, dim]`` (array or tensor) with ids ``0..N-1``, replacing earlier contents."""
        X = as_float_array(X, "X")
        if len(self.index):
            self.index.client.drop_collection(self.index.collection)
            self.index._create(_pymilvus())
            self.index._count = 0
        self.index.add(X, np.arange(len(X)))
        log.info("Milvus collection %r holds %d vectors", self.index.collection, len(self.index))

    @staticmethod
    def process_result(results) -> tuple[list[list[int]], list[list[float]]]:
        """pymilvus search hits -> ``(ids, distances)`` lists, one list per query."""
        idx_list, score_list = [], []
        for hits in results:
            idx_list.append([int(h["id"]) for h in hits])
            score_list.append([float(h["distance"]) for h in hits])
        return idx_list, score_list

    def query(self, v: Any, n: int) -> tuple[list[list[int]], list[list[float]]]:
        """The ``n`` nearest stored rows of each query row of ``v`` (``[Q, dim]`` or ``[dim]``)."""
        queries = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float32)
        scores, ids = self.index.search(queries.reshape(-1, self.dim), n)
        if self.index.metric == "l2":
            scores = -scores  # back to Milvus's squared distances
        idx_list, score_list = [], []
        for row_ids, row_scores in zip(ids.tolist(), scores.tolist()):
            keep = [i for i, item in enumerate(row_ids) if item >= 0]
            idx_list.append([row_ids[i] for i in keep])
            score_list.append([row_scores[i] for i in keep])
        return idx_list, score_list

    def close(self) -> None:
        self.index.close()

    def __str__(self) -> str:
        return f"Milvus(dim={self.dim}, uri={self.index.uri!r}, index_type={self.index.index_type!r})"
