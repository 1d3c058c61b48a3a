"""Deep & Cross Network (Wang et al., 2017): cross layers beside an MLP, joined by a linear head."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.models import toy
from trainhub.models.registry import register_model
from trainhub.nn import LR, MLP, CrossNetwork, EmbeddingCollection


def _example():
    features = toy.sparse_features() + toy.dense_features() + toy.history_features()
    return dict(features=features, n_cross_layers=2, mlp_params={"dims": [16, 8]}), toy.batch()


@register_model("ranking", _example)
class DCN(nn.Module):
    """DCN.

    Args:
        features: every input feature (concatenated into one vector).
        n_cross_layers: number of cross layers.
        mlp_params: keyword arguments of :class:`trainhub.nn.MLP` (hidden part; no output layer).

    Returns logits ``[B]``.
    """

    def __init__(self, features, n_cross_layers, mlp_params):
        super().__init__()
        self.features = list(features)
        self.dims = sum(f.embed_dim for f in self.features)
        self.embedding = EmbeddingCollection(self.features)
        self.cn = CrossNetwork(self.dims, n_cross_layers)
        self.mlp = MLP(self.dims, output_layer=False, **mlp_params)
        self.linear = LR(self.dims + self.mlp.output_dim)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        embed = self.embedding(x, self.features, squeeze_dim=True)  # [B, dims]
        joined = torch.cat([self.cn(embed), self.mlp(embed)], dim=1)
        return self.linear(joined).squeeze(1)
