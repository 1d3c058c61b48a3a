"""Factorization machine (Rendle, 2010): logistic regression plus factorized pairwise interactions."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.features import DenseFeature
from trainhub.models import toy
from trainhub.models.ranking.lr import LinearTerm
from trainhub.models.registry import register_model
from trainhub.nn import FM as FMInteraction
from trainhub.nn import EmbeddingCollection


def _example():
    return dict(features=toy.sparse_features() + toy.dense_features() + toy.history_features()), toy.batch()


@register_model("ranking", _example)
class FM(nn.Module):
    """Factorization machine (trainhub baseline; not in Torch-RecHub).

    Args:
        features: sparse/sequence features (one shared ``embed_dim``) take part in the linear
            and pairwise terms; dense features only in the linear term.

    Returns logits ``[B]``.
    """

    def __init__(self, features):
        super().__init__()
        self.features = list(features)
        self.fm_features = [f for f in self.features if not isinstance(f, DenseFeature)]
        if len(self.fm_features) < 2:
            raise ValueError("FM needs at least two sparse or sequence features to form an interaction")
        self.linear = LinearTerm(self.features)
        self.embedding = EmbeddingCollection(self.fm_features)
        self.fm = FMInteraction(reduce_sum=True)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(x) + self.fm(self.embedding(x, self.fm_features)).squeeze(1)
