"""The index interface shared by every backend, and helpers for multi-interest queries.

Scores are always "higher is better": inner product (``"ip"``), cosine similarity
(``"cosine"``), or the negated squared Euclidean distance (``"l2"``). Indexes are saved as a
folder of plain files (JSON metadata, arrays as ``.npy`` loaded with ``allow_pickle=False``, the
backend's own index file); nothing is pickled. ``meta.json`` records each file's size and SHA-256,
and loading refuses a folder whose files do not match (:mod:`trainhub.retrieval.integrity`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainhub.files import read_json, write_text_atomic
from trainhub.retrieval.integrity import digest_files, verify_files

__all__ = ["VectorIndex", "METRICS", "as_float_array", "merge_interest_results", "read_meta", "write_meta"]

METRICS = ("ip", "cosine", "l2")


def as_float_array(vectors: Any, what: str = "vectors") -> np.ndarray:
    """``[N, D]`` float32 C-contiguous numpy array from a tensor or array-like."""
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().cpu().numpy()
    arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D [N, D], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise ValueError(f"{what} row {row} holds NaN or inf")
    return arr


def merge_interest_results(scores: np.ndarray, ids: np.ndarray, num_queries: int,
                           k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-interest results ``[Q*K, k]`` into ``[Q, k]``: an item keeps its best score once."""
    scores = scores.reshape(num_queries, -1).astype(np.float32)
    ids = ids.reshape(num_queries, -1)
    order = np.argsort(-scores, axis=1, kind="stable")
    scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
    # Among equal ids keep the first (best-scored) occurrence.
    by_id = np.argsort(ids, axis=1, kind="stable")
    sorted_ids = np.take_along_axis(ids, by_id, 1)
    duplicate_sorted = np.zeros_like(sorted_ids, dtype=bool)
    duplicate_sorted[:, 1:] = sorted_ids[:, 1:] == sorted_ids[:, :-1]
    duplicate = np.zeros_like(duplicate_sorted)
    np.put_along_axis(duplicate, by_id, duplicate_sorted, 1)
    duplicate |= ids < 0  # backends mark empty slots with -1
    scores = np.where(duplicate, -np.inf, scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
    ids = np.where(np.isfinite(scores), ids, -1)
    return scores, ids


@contextlib.contextmanager
def staged_dir(path: str | Path):
    """Yield a temporary folder beside ``path``; when the block succeeds, swap it in for ``path``.

    A crash mid-save leaves the previous index (or nothing) at ``path``, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_meta(path: Path, meta: dict) -> None:
    """Write ``meta.json`` last, with the size and SHA-256 of every other file in the folder
    (see :mod:`trainhub.retrieval.integrity`)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in path.iterdir() if p.is_file() and p.name != "meta.json")
    write_text_atomic(path / "meta.json", json.dumps({**meta, "files": digest_files(path, names)}, indent=2))


def read_meta(path: Path, kind: str, verify: bool = True) -> dict:
    """Read ``meta.json``; with ``verify``, first check every saved file's size and SHA-256
    (raises :class:`~trainhub.retrieval.integrity.IndexIntegrityError` naming the file)."""
    file = Path(path) / "meta.json"
    if not file.is_file():
        raise FileNotFoundError(f"no index saved at {path} (missing meta.json)")
    meta = read_json(file, keys=("kind",))
    if meta.get("kind") != kind:
        raise ValueError(f"{path} holds a {meta.get('kind')!r} index, not {kind!r}")
    if verify:
        verify_files(Path(path), meta)
    return meta


class VectorIndex:
    """Interface: ``add(vectors, ids=None)``, ``search(queries, k) -> (scores, ids)``, ``save(path)``,
    ``load(path)`` (classmethod), ``len(index)``.

    ``queries`` are ``[Q, D]`` or multi-interest ``[Q, K, D]``; a multi-interest user gets the
    items best matched by any of its interests, each item once. Results are tensors
    ``scores [Q, k]`` (float32) and ``ids [Q, k]`` (int64, ``-1`` where fewer than ``k`` items exist).
    """

    kind = "base"

    def __init__(self, dim: int, metric: str = "ip"):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim, self.metric = int(dim), metric

    def __len__(self) -> int:
        raise NotImplementedError

    def _check_add(self, vectors: Any, ids: Any, start: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = as_float_array(vectors)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {vectors.shape[1]}, the index expects {self.dim}")
        if ids is None:
            ids = np.arange(start, start + len(vectors), dtype=np.int64)
        else:
            ids = np.asarray(ids.cpu().numpy() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64).reshape(-1)
            if len(ids) != len(vectors):
                raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if self.metric == "cosine":
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors, ids

    def _check_queries(self, queries: Any, k: int) -> tuple[np.ndarray, int, int]:
        """Flatten ``[Q, D]`` / ``[Q, K, D]`` to ``[Q*K, D]``; return it, ``Q`` and ``K``."""
        if isinstance(queries, torch.Tensor):
            queries = queries.detach().cpu().numpy()
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim not in (2, 3) or queries.shape[-1] != self.dim:
            raise ValueError(f"queries must be [Q, {self.dim}] or [Q, K, {self.dim}], got shape {queries.shape}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if len(self) == 0:
            raise ValueError("the index is empty; add vectors first")
        num_queries, interests = queries.shape[0], (queries.shape[1] if queries.ndim == 3 else 1)
        flat = as_float_array(queries.reshape(-1, self.dim), "queries")
        if self.metric == "cosine":
            flat = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
        return flat, num_queries, interests

    @staticmethod
    def _result(scores: np.ndarray, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32)), torch.from_numpy(
            np.ascontiguousarray(ids, dtype=np.int64))
