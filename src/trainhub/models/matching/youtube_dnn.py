"""YouTube DNN candidate generation (Covington et al., 2016): a user MLP against item embeddings."""

from __future__ import annotations

import torch

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
from trainhub.nn import EmbeddingCollection

__all__ = ["YoutubeDNN"]


def _example():
    features = {f.name: f for f in toy.sparse_features()}
    user = [features["user_id"], features["city"], toy.history_features()[0]]
    kwargs = dict(user_features=user, item_features=[features["item_id"]],
                  neg_item_feature=[toy.neg_items_feature()], user_params={"dims": [16, toy.EMBED_DIM]},
                  temperature=0.1)
    return kwargs, toy.match_batch()


@register_model("matching", _example)
class YoutubeDNN(MatchModel):
    """YoutubeDNN.

    Args:
        user_features: user features (history as a pooled ``SequenceFeature``).
        item_features: the target item feature (one ``SparseFeature``); its embedding is the item vector.
        neg_item_feature: the negatives, a ``SequenceFeature`` (``pooling="concat"``) of ``[B, K]``
            ids sharing the item table (or a ``SparseFeature`` of ``[B]`` ids).
        user_params: user MLP kwargs; its last width must equal the item ``embed_dim``.
        temperature: cosine scores are divided by it.

    ``model(x)`` returns list-wise logits ``[B, 1 + K]`` with the positive in column 0.
    """

    def __init__(self, user_features, item_features, neg_item_feature, user_params, temperature: float = 1.0):
        super().__init__(temperature)
        self.user_features = as_list(user_features)
        self.item_features = as_list(item_features)
        self.neg_item_feature = as_list(neg_item_feature)
        if len(self.item_features) != 1 or len(self.neg_item_feature) > 1:
            raise ValueError("YoutubeDNN takes one item feature and at most one negative-item feature")
        self.item_feature = self.item_features[0]
        self.embedding = EmbeddingCollection(self.user_features + self.item_features + self.neg_item_feature)
        self.user_mlp = tower_mlp(flat_dim(self.user_features), user_params, "YoutubeDNN user_params")
        if self.user_mlp.output_dim != self.item_feature.embed_dim:
            raise ValueError(f"YoutubeDNN user_params dims must end with the item embed_dim "
                             f"{self.item_feature.embed_dim}, got {self.user_mlp.output_dim}")

    def user_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return normalize(self.user_mlp(self.embedding(x, self.user_features, squeeze_dim=True)))  # [B, D]

    def item_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return normalize(lookup_ids(self.embedding, self.item_feature, x))  # [B, D]

    def scores(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.neg_item_feature:
            raise ValueError("YoutubeDNN needs neg_item_feature for list-wise training "
                             "(or train with in_batch_neg=True)")
        neg = normalize(lookup_ids(self.embedding, self.neg_item_feature[0], x))  # [B, K, D]
        candidates = stack_candidates(self.item_tower(x), neg)  # [B, 1+K, D]
        return candidate_scores(self.user_tower(x), candidates) / self.temperature  # [B, 1+K]
