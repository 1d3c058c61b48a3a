"""Shared body of multi-interest models (MIND, ComiRec-SA, ComiRec-DR).

A subclass supplies ``extract(seq [B, L, D], mask [B, L]) -> [B, K, D]``; this base embeds the
history, mixes in user profile features, normalises, and scores candidates with the interest
closest to the positive item (hard label-aware attention), as the papers train them.
"""

from __future__ import annotations

import torch
from torch import nn

from trainhub.features import SequenceFeature
from trainhub.models import toy
from trainhub.models.matching.base import (
    MatchModel,
    as_list,
    best_interest,
    flat_dim,
    lookup_ids,
    normalize,
    stack_candidates,
)
from trainhub.nn import EmbeddingCollection, require

__all__ = ["InterestModel", "interest_example"]


def interest_example(**extra):
    """Constructor kwargs and batch for the toy data."""
    features = {f.name: f for f in toy.sparse_features()}
    kwargs = dict(user_features=[features["user_id"]],
                  history_features=[toy.history_features(pooling="concat")[0]],
                  item_features=[features["item_id"]], neg_item_feature=[toy.neg_items_feature()],
                  temperature=0.1, interest_num=3, **extra)
    return kwargs, toy.match_batch()


class InterestModel(MatchModel):
    """Multi-interest user tower ``[B, K, D]`` against one item embedding table.

    Args:
        user_features: profile features (may be empty); when given they are concatenated to every
            interest and mapped back to ``D`` by two ReLU layers (as in MIND).
        history_features: the item-id history, a ``SequenceFeature`` with ``pooling="concat"``
            sharing the item table.
        item_features: the target item (one ``SparseFeature``).
        neg_item_feature: negatives ``[B, K]`` (concat ``SequenceFeature``) for list-wise training.
        temperature: scores are divided by it.
        interest_num: number of interests ``K``.
    """

    def __init__(self, user_features, history_features, item_features, neg_item_feature, temperature: float,
                 interest_num: int):
        super().__init__(temperature)
        self.user_features = as_list(user_features)
        self.history_features = as_list(history_features)
        self.item_features = as_list(item_features)
        self.neg_item_feature = as_list(neg_item_feature)
        if len(self.item_features) != 1 or not self.history_features:
            raise ValueError(f"{type(self).__name__} takes one item feature and an item-history feature")
        self.history_feature = self.history_features[0]
        if not isinstance(self.history_feature, SequenceFeature):
            raise TypeError(f"history feature {self.history_feature.name!r} must be a SequenceFeature")
        self.item_feature = self.item_features[0]
        self.embed_dim = self.item_feature.embed_dim
        if self.history_feature.embed_dim != self.embed_dim:
            raise ValueError("the history feature and the item feature must share one embed_dim")
        self.interest_num = interest_num
        self.embedding = EmbeddingCollection(self.user_features + self.history_features + self.item_features
                                             + self.neg_item_feature)
        self.profile = None
        if self.user_features:
            width = self.embed_dim + flat_dim(self.user_features)
            self.profile = nn.Sequential(nn.Linear(width, 4 * self.embed_dim), nn.ReLU(),
                                         nn.Linear(4 * self.embed_dim, self.embed_dim))

    def extract(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def history(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = require(x, self.history_feature.name)
        return lookup_ids(self.embedding, self.history_feature, x), ids != self.history_feature.pad_id

    def user_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        seq, mask = self.history(x)  # [B, L, D], [B, L]
        interests = self.extract(seq, mask)  # [B, K, D]
        if self.profile is not None:
            profile = self.embedding(x, self.user_features, squeeze_dim=True)  # [B, P]
            profile = profile.unsqueeze(1).expand(-1, interests.shape[1], -1)
            interests = self.profile(torch.cat([interests, profile], dim=-1))
        return normalize(interests)  # [B, K, D]

    def item_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return normalize(lookup_ids(self.embedding, self.item_feature, x))  # [B, D]

    def scores(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.neg_item_feature:
            raise ValueError(f"{type(self).__name__} needs neg_item_feature for list-wise training "
                             "(or train with in_batch_neg=True)")
        interests, pos = self.user_tower(x), self.item_tower(x)
        user = best_interest(interests, pos)  # [B, D]
        neg = normalize(lookup_ids(self.embedding, self.neg_item_feature[0], x))
        candidates = stack_candidates(pos, neg)  # [B, 1+K, D]
        return torch.einsum("bd,bcd->bc", user, candidates) / self.temperature  # [B, 1+K]
