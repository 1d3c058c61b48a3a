"""Shared body of session models that score against the whole item table (NARM, STAMP)."""

from __future__ import annotations

import dataclasses

import torch

from trainhub.features import SequenceFeature
from trainhub.models import toy
from trainhub.models.matching.base import MatchModel
from trainhub.nn import EmbeddingCollection, check_ids, require

__all__ = ["SessionModel", "session_example"]


def session_example(**extra):
    features = {f.name: f for f in toy.sparse_features()}
    kwargs = dict(item_history_feature=toy.history_features(pooling="concat")[0], item_feature=features["item_id"],
                  **extra)
    return kwargs, toy.match_batch()


class SessionModel(MatchModel):
    """A session encoder ``encode(seq, mask) -> [B, D]`` scored against every item.

    ``model(x)`` returns full-softmax logits ``[B, vocab_size]``; train list-wise with ``y`` = the
    target item id. ``item_feature`` (optional) names the target-item column that ``"item"`` mode
    and in-batch negatives embed; it is looked up in the history's table, so scores agree.
    """

    def __init__(self, item_history_feature, item_feature=None, temperature: float = 1.0):
        super().__init__(temperature)
        if isinstance(item_history_feature, (list, tuple)):
            (item_history_feature,) = item_history_feature
        if not isinstance(item_history_feature, SequenceFeature):
            raise TypeError("item_history_feature must be a SequenceFeature")
        if isinstance(item_feature, (list, tuple)):
            (item_feature,) = item_feature
        features = [item_history_feature] + ([item_feature] if item_feature is not None else [])
        if item_history_feature.shared_with not in (None, *(f.name for f in features)):
            # The table it shares is not part of this model: it simply owns its own table.
            item_history_feature = dataclasses.replace(item_history_feature, shared_with=None)
            features[0] = item_history_feature
        self.item_history_feature = item_history_feature
        self.item_feature = item_feature
        self.embedding = EmbeddingCollection(features)
        self.embed_dim = item_history_feature.embed_dim

    @property
    def item_table(self) -> torch.nn.Embedding:
        return self.embedding.tables[self.item_history_feature.table_name]

    def history(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = require(x, self.item_history_feature.name)
        return self.embedding.lookup(self.item_history_feature, ids), ids != self.item_history_feature.pad_id

    def encode(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def user_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encode(*self.history(x))  # [B, D]

    def item_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.item_feature is None:
            raise ValueError(f"{type(self).__name__} was built without item_feature, so it cannot embed target items; "
                             "pass item_feature=SparseFeature(<target item column>, ...)")
        ids = require(x, self.item_feature.name).reshape(-1)
        check_ids(self.item_feature.name, ids, self.item_table.num_embeddings)
        return self.item_table(ids.long())  # [B, D]

    def scores(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.user_tower(x) @ self.item_table.weight.T / self.temperature  # [B, V]
