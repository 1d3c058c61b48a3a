"""The tower protocol shared by matching models, and small helpers they compose.

Every matching model exposes:

* ``user_tower(x)`` -> user embeddings ``[B, D]`` (multi-interest models: ``[B, K, D]``);
* ``item_tower(x)`` -> embeddings of the batch's target item ``[B, D]``;
* ``scores(x)`` -> what training consumes: logits ``[B]`` (point-wise), ``(pos, neg)`` scores
  (pair-wise) or candidate logits ``[B, 1 + K]`` with the positive first (list-wise);
* ``temperature`` (scores are divided by it) and ``mode`` (``None``, ``"user"``, ``"item"``):
  ``model(x)`` returns ``scores(x)``, ``user_tower(x)`` or ``item_tower(x)`` accordingly, as in
  Torch-RecHub.

Trainers and tasks only use this protocol, never model classes.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainhub.features import DenseFeature, SequenceFeature, SparseFeature
from trainhub.nn import MLP, EmbeddingCollection, require
from trainhub.nn.multi_interest import interest_scores

__all__ = [
    "MatchModel",
    "interest_scores",
    "candidate_scores",
    "best_interest",
    "lookup_ids",
    "flat_dim",
    "tower_mlp",
    "as_list",
    "stack_candidates",
    "normalize",
]

_MODES = (None, "user", "item")


class MatchModel(nn.Module):
    """Base of matching models: dispatches ``forward`` on ``mode``."""

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.mode: str | None = None

    def user_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def item_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, x: dict[str, torch.Tensor]):
        raise NotImplementedError

    def forward(self, x: dict[str, torch.Tensor]):
        if self.mode is None:
            return self.scores(x)
        if self.mode == "user":
            return self.user_tower(x)
        if self.mode == "item":
            return self.item_tower(x)
        raise ValueError(f"{type(self).__name__}.mode must be one of {_MODES}, got {self.mode!r}")


def as_list(features) -> list:
    """Accept one feature (or column name) or a list of them (Torch-RecHub passes lists)."""
    if features is None:
        return []
    if isinstance(features, (SparseFeature, SequenceFeature, DenseFeature, str)):
        return [features]
    return list(features)


def flat_dim(features: Sequence[object]) -> int:
    """Width of ``EmbeddingCollection(..., squeeze_dim=True)`` over pooled features."""
    for f in features:
        if isinstance(f, SequenceFeature) and f.pooling == "concat":
            raise ValueError(f"feature {f.name!r} uses pooling='concat'; a tower input needs 'mean' or 'sum'")
    return sum(f.embed_dim for f in features)


def tower_mlp(input_dim: int, params: dict | None, what: str) -> MLP:
    """A tower MLP without the final ``Linear(., 1)``: its last hidden width is the embedding size."""
    params = dict(params or {})
    params.pop("output_layer", None)
    if not params.get("dims"):
        raise ValueError(f"{what} needs 'dims' (the last one is the embedding size), got {params}")
    return MLP(input_dim, output_layer=False, **params)


def lookup_ids(embedding: EmbeddingCollection, feature, x: dict[str, torch.Tensor]) -> torch.Tensor:
    """Raw embedding of an id feature: ``[B]`` -> ``[B, D]``, ``[B, K]`` -> ``[B, K, D]`` (no pooling)."""
    ids = require(x, feature.name)
    if isinstance(feature, SparseFeature) and ids.dim() == 2 and ids.shape[1] == 1:
        ids = ids.squeeze(1)
    return embedding.lookup(feature, ids)


def candidate_scores(user: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Score each row's own candidates: ``[B, D]`` or ``[B, K, D]`` x ``[B, C, D]`` -> ``[B, C]``."""
    if user.dim() == 2:
        return torch.einsum("bd,bcd->bc", user, candidates)
    return torch.einsum("bkd,bcd->bkc", user, candidates).max(dim=1).values


def best_interest(interests: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The interest closest to the target item (hard label-aware attention): ``[B, K, D]`` -> ``[B, D]``."""
    idx = torch.einsum("bkd,bd->bk", interests, target).argmax(dim=1)
    return interests[torch.arange(interests.shape[0], device=interests.device), idx]


def stack_candidates(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``pos [B, D]`` and ``neg [B, D]`` or ``[B, K, D]`` -> ``[B, 1 + K, D]`` with the positive first."""
    if neg.dim() == 2:
        neg = neg.unsqueeze(1)
    return torch.cat([pos.unsqueeze(1), neg], dim=1)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, p=2, dim=-1)
