"""AutoInt (Song et al., 2019): multi-head self-attention over field embeddings, plus a linear
part and an optional MLP."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.features import DenseFeature
from trainhub.models import toy
from trainhub.models.registry import register_model
from trainhub.nn import LR, MLP, EmbeddingCollection, InteractingLayer


def _example():
    kwargs = dict(sparse_features=toy.sparse_features() + toy.history_features(), dense_features=toy.dense_features(),
                  num_layers=2, num_heads=2, dropout=0.1, mlp_params={"dims": [16], "dropout": 0.1})
    return kwargs, toy.batch()


@register_model("ranking", _example)
class AutoInt(nn.Module):
    """AutoInt (AutoInt+ when ``mlp_params`` is given).

    Dense features become fields too: each value scales a learned ``embed_dim`` vector.

    Args:
        sparse_features: sparse/sequence features, one shared ``embed_dim`` (at least one).
        dense_features: dense features (may be empty or None).
        num_layers: interacting layers.
        num_heads: attention heads per layer (must divide ``embed_dim``).
        dropout: dropout on the attention weights.
        mlp_params: keyword arguments of :class:`trainhub.nn.MLP` for a parallel MLP over the
            field embeddings; None for no MLP.

    Returns logits ``[B]``.
    """

    def __init__(self, sparse_features, dense_features, num_layers=3, num_heads=2, dropout=0.0, mlp_params=None):
        super().__init__()
        self.sparse_features = list(sparse_features)
        self.dense_features = list(dense_features or [])
        if not self.sparse_features:
            raise ValueError("AutoInt needs at least one sparse feature (it sets embed_dim)")
        for f in self.dense_features:
            if not isinstance(f, DenseFeature):
                raise TypeError(f"dense_features must hold DenseFeature objects; {f.name!r} is {type(f).__name__}")
        self.embed_dim = embed_dim = self.sparse_features[0].embed_dim
        num_fields = len(self.sparse_features) + len(self.dense_features)
        self.dims = num_fields * embed_dim
        self.sparse_embedding = EmbeddingCollection(self.sparse_features)
        # One vector per dense feature (input dims summed for vector-valued dense features).
        self.dense_embeddings = nn.ModuleDict(
            {f.name: nn.Linear(f.embed_dim, embed_dim, bias=False) for f in self.dense_features})
        self.interacting_layers = nn.ModuleList(
            InteractingLayer(embed_dim, num_heads=num_heads, dropout=dropout, residual=True) for _ in range(num_layers))
        self.linear = LR(self.dims)
        self.attn_linear = nn.Linear(self.dims, 1)
        self.mlp = MLP(self.dims, **mlp_params) if mlp_params is not None else None

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        fields = [self.sparse_embedding(x, self.sparse_features)]  # [B, S, D]
        for f in self.dense_features:
            value = self.sparse_embedding.embed_one(f, x)  # [B, d]
            fields.append(self.dense_embeddings[f.name](value).unsqueeze(1))  # [B, 1, D]
        embed = torch.cat(fields, dim=1)  # [B, F, D]
        attended = embed
        for layer in self.interacting_layers:
            attended = layer(attended)
        logit = self.attn_linear(attended.flatten(1)) + self.linear(embed.flatten(1))
        if self.mlp is not None:
            logit = logit + self.mlp(embed.flatten(1))
        return logit.squeeze(1)
