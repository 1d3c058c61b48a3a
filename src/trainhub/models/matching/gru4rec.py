"""GRU4Rec (Hidasi et al., 2016) as a retrieval tower: a GRU over the item history."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.features import SequenceFeature
from trainhub.models import toy
from trainhub.models.matching.base import (
    MatchModel,
    as_list,
    candidate_scores,
    flat_dim,
    lookup_ids,
    normalize,
    stack_candidates,
    tower_mlp,
)
from trainhub.models.registry import register_model
from trainhub.nn import EmbeddingCollection, require
from trainhub.nn.multi_interest import gather_last, left_align

__all__ = ["GRU4Rec"]


def _example():
    features = {f.name: f for f in toy.sparse_features()}
    kwargs = dict(user_features=[features["user_id"]], history_features=[toy.history_features(pooling="concat")[0]],
                  item_features=[features["item_id"]], neg_item_feature=[toy.neg_items_feature()],
                  user_params={"dims": [16, toy.EMBED_DIM]}, temperature=0.1)
    return kwargs, toy.match_batch()


@register_model("matching", _example)
class GRU4Rec(MatchModel):
    """GRU4Rec.

    Args:
        user_features: extra user features (may be empty), concatenated to the GRU state.
        history_features: the item-id history (``SequenceFeature``, ``pooling="concat"``, sharing
            the item table); pre- or post-padded.
        item_features: the target item (one ``SparseFeature``).
        neg_item_feature: negatives ``[B, K]`` for list-wise training.
        user_params: MLP kwargs on ``[GRU state, user features]``; the last width must equal the
            item ``embed_dim``.
        temperature: cosine scores are divided by it.

    ``model(x)`` returns list-wise logits ``[B, 1 + K]`` (Torch-RecHub summed over the wrong
    dimension and returned ``[B, D]``).
    """

    def __init__(self, user_features, history_features, item_features, neg_item_feature, user_params,
                 temperature: float = 1.0):
        super().__init__(temperature)
        self.history_features = as_list(history_features)
        self.user_features = [f for f in as_list(user_features) if f not in self.history_features]
        self.item_features = as_list(item_features)
        self.neg_item_feature = as_list(neg_item_feature)
        if len(self.item_features) != 1 or not self.history_features:
            raise ValueError("GRU4Rec takes one item feature and an item-history feature")
        self.history_feature = self.history_features[0]
        if not isinstance(self.history_feature, SequenceFeature):
            raise TypeError(f"history feature {self.history_feature.name!r} must be a SequenceFeature")
        self.item_feature = self.item_features[0]
        dim = self.history_feature.embed_dim
        self.embedding = EmbeddingCollection(self.user_features + self.history_features + self.item_features
                                             + self.neg_item_feature)
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.user_mlp = tower_mlp(dim + flat_dim(self.user_features), user_params, "GRU4Rec user_params")
        if self.user_mlp.output_dim != self.item_feature.embed_dim:
            raise ValueError(f"GRU4Rec user_params dims must end with the item embed_dim {self.item_feature.embed_dim}")

    def user_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = require(x, self.history_feature.name)
        mask, seq = left_align(ids != self.history_feature.pad_id, lookup_ids(self.embedding, self.history_feature, x))
        state = gather_last(self.gru(seq)[0], mask)  # [B, D]: the GRU output after the last real item
        if self.user_features:
            state = torch.cat([state, self.embedding(x, self.user_features, squeeze_dim=True)], dim=1)
        return normalize(self.user_mlp(state))

    def item_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return normalize(lookup_ids(self.embedding, self.item_feature, x))

    def scores(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.neg_item_feature:
            raise ValueError("GRU4Rec needs neg_item_feature for list-wise training (or train with in_batch_neg=True)")
        neg = normalize(lookup_ids(self.embedding, self.neg_item_feature[0], x))
        candidates = stack_candidates(self.item_tower(x), neg)
        return candidate_scores(self.user_tower(x), candidates) / self.temperature  # [B, 1+K]
