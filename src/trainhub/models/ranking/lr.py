"""Logistic regression on one-hot ids and dense values: the baseline every CTR model must beat."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from trainhub.features import DenseFeature, RandomNormal
from trainhub.models import toy
from trainhub.models.registry import register_model
from trainhub.nn import EmbeddingCollection


def _example():
    return dict(features=toy.sparse_features() + toy.dense_features() + toy.history_features()), toy.batch()


class LinearTerm(nn.Module):
    """``bias + sum of one weight per id (sequence features: pooled over real items) + w . dense``.

    The features' own ``embed_dim`` is not used: every id gets a scalar weight, i.e. logistic
    regression on one-hot columns.
    """

    def __init__(self, features):
        super().__init__()
        self.id_features = [dataclasses.replace(f, embed_dim=1, initializer=RandomNormal(0.0, 1e-4))
                            for f in features if not isinstance(f, DenseFeature)]
        self.dense_features = [f for f in features if isinstance(f, DenseFeature)]
        self.weights = EmbeddingCollection(self.id_features)
        dense_dim = sum(f.embed_dim for f in self.dense_features)
        self.dense = nn.Linear(dense_dim, 1, bias=False) if dense_dim else None
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        logit = self.bias.expand(next(iter(x.values())).shape[0])  # [B]
        if self.id_features:
            logit = logit + self.weights(x, self.id_features, squeeze_dim=True).sum(1)
        if self.dense is not None:
            dense = torch.cat([self.weights.embed_one(f, x) for f in self.dense_features], dim=1)
            logit = logit + self.dense(dense).squeeze(1)
        return logit


@register_model("ranking", _example)
class LR(nn.Module):
    """Logistic regression (trainhub baseline; not in Torch-RecHub).

    Args:
        features: sparse, sequence and dense features.

    Returns logits ``[B]``.
    """

    def __init__(self, features):
        super().__init__()
        self.features = list(features)
        if not self.features:
            raise ValueError("LR needs at least one feature")
        self.linear = LinearTerm(self.features)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(x)
