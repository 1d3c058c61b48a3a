"""Exact top-k search with torch matrix products (no extra dependency)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainhub.retrieval.base import VectorIndex, read_meta, staged_dir, write_meta
from trainhub.retrieval.integrity import check_shape

__all__ = ["TorchIndex"]


class TorchIndex(VectorIndex):
    """Brute-force index: scores every stored vector, chunked over queries to bound memory.

    Args:
        dim: vector size.
        metric: ``"ip"``, ``"cosine"`` or ``"l2"`` (scores are negated squared distances).
        device: where the vectors live and products run.
        chunk_size: queries scored per matrix product.

    Multi-interest queries ``[Q, K, D]`` score an item with the best interest (max), exactly.

    Example:
        >>> index = TorchIndex(dim=64, metric="ip")
        >>> index.add(item_embeddings, ids=item_ids)
        >>> scores, ids = index.search(user_embeddings, k=50)
    """

    kind = "torch"

    def __init__(self, dim: int, metric: str = "ip", device: str | torch.device = "cpu", chunk_size: int = 1024):
        super().__init__(dim, metric)
        self.device = torch.device(device)
        self.chunk_size = chunk_size
        self.vectors = torch.empty(0, self.dim, device=self.device)
        self.ids = torch.empty(0, dtype=torch.long, device=self.device)

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def add(self, vectors: Any, ids: Any = None) -> None:
        vectors, ids = self._check_add(vectors, ids, len(self))
        self.vectors = torch.cat([self.vectors, torch.from_numpy(vectors).to(self.device)])
        self.ids = torch.cat([self.ids, torch.from_numpy(ids).to(self.device)])

    @torch.no_grad()
    def search(self, queries: Any, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        flat, num_queries, interests = self._check_queries(queries, k)
        queries_t = torch.from_numpy(flat).to(self.device).view(num_queries, interests, self.dim)
        k_eff = min(k, len(self))
        all_scores, all_ids = [], []
        sq_norms = self.vectors.pow(2).sum(1) if self.metric == "l2" else None
        for start in range(0, num_queries, self.chunk_size):
            q = queries_t[start:start + self.chunk_size]  # [q, K, D]
            scores = torch.einsum("qkd,nd->qkn", q, self.vectors)
            if sq_norms is not None:  # -|q - v|^2 = 2 q.v - |q|^2 - |v|^2
                scores = 2 * scores - q.pow(2).sum(-1, keepdim=True) - sq_norms
            scores = scores.max(dim=1).values  # best interest per item
            top = scores.topk(k_eff, dim=1)
            all_scores.append(top.values.cpu())
            all_ids.append(self.ids[top.indices].cpu())
        scores, ids = torch.cat(all_scores), torch.cat(all_ids)
        if k_eff < k:  # fewer items than k: pad like the other backends
            pad = k - k_eff
            scores = torch.cat([scores, torch.full((num_queries, pad), float("-inf"))], 1)
            ids = torch.cat([ids, torch.full((num_queries, pad), -1, dtype=torch.long)], 1)
        return scores, ids

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with staged_dir(path) as tmp:
            np.save(tmp / "vectors.npy", self.vectors.cpu().numpy(), allow_pickle=False)
            np.save(tmp / "ids.npy", self.ids.cpu().numpy(), allow_pickle=False)
            write_meta(tmp, {"kind": self.kind, "dim": self.dim, "metric": self.metric, "count": len(self)})
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "TorchIndex":
        path = Path(path)
        meta = read_meta(path, cls.kind)
        index = cls(meta["dim"], meta["metric"], device=device)
        index.vectors = torch.from_numpy(np.load(path / "vectors.npy", allow_pickle=False)).to(index.device)
        index.ids = torch.from_numpy(np.load(path / "ids.npy", allow_pickle=False)).to(index.device)
        check_shape(path, meta, len(index.ids), index.vectors.shape[1])
        check_shape(path, meta, len(index), index.dim)
        return index
