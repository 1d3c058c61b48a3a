"""Wide & Deep (Cheng et al., 2016): a linear "wide" part plus an MLP "deep" part."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.models import toy
from trainhub.models.registry import register_model
from trainhub.nn import LR, MLP, EmbeddingCollection


def _example():
    sparse, dense = toy.sparse_features(), toy.dense_features()
    kwargs = dict(wide_features=sparse[:2], deep_features=sparse + dense + toy.history_features(),
                  mlp_params={"dims": [16, 8], "dropout": 0.1})
    return kwargs, toy.batch()


@register_model("ranking", _example)
class WideDeep(nn.Module):
    """Wide & Deep.

    Args:
        wide_features: features of the linear part (their embeddings are concatenated).
        deep_features: features of the MLP part.
        mlp_params: keyword arguments of :class:`trainhub.nn.MLP` (``dims``, ``dropout``, ``activation``).

    Returns logits ``[B]``.
    """

    def __init__(self, wide_features, deep_features, mlp_params):
        super().__init__()
        self.wide_features = list(wide_features)
        self.deep_features = list(deep_features)
        self.embedding = EmbeddingCollection(self.wide_features + self.deep_features)
        self.linear = LR(sum(f.embed_dim for f in self.wide_features))
        self.mlp = MLP(sum(f.embed_dim for f in self.deep_features), **mlp_params)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        wide = self.embedding(x, self.wide_features, squeeze_dim=True)  # [B, wide_dims]
        deep = self.embedding.flat_parts(x, self.deep_features)  # pieces of [B, deep_dims]
        return (self.linear(wide) + self.mlp(deep)).squeeze(1)
