"""DeepFM (Guo et al., 2017): linear + factorization machine + MLP, summed as logits."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.models import toy
from trainhub.models.registry import register_model
from trainhub.nn import FM, LR, MLP, EmbeddingCollection
from trainhub.nn.embedding import concat_parts, stack_fields


def _example():
    sparse, dense = toy.sparse_features(), toy.dense_features()
    kwargs = dict(deep_features=sparse + dense + toy.history_features(), fm_features=sparse + toy.history_features(),
                  mlp_params={"dims": [16, 8], "dropout": 0.1, "activation": "relu"})
    return kwargs, toy.batch()


@register_model("ranking", _example)
class DeepFM(nn.Module):
    """DeepFM.

    Args:
        deep_features: features of the MLP part (any kind).
        fm_features: sparse/sequence features of the linear and FM parts (one shared ``embed_dim``).
        mlp_params: keyword arguments of :class:`trainhub.nn.MLP`.

    Returns logits ``[B]``.
    """

    def __init__(self, deep_features, fm_features, mlp_params):
        super().__init__()
        self.deep_features = list(deep_features)
        self.fm_features = list(fm_features)
        self.embedding = EmbeddingCollection(self.deep_features + self.fm_features)
        self.linear = LR(sum(f.embed_dim for f in self.fm_features))
        self.fm = FM(reduce_sum=True)
        self.mlp = MLP(sum(f.embed_dim for f in self.deep_features), **mlp_params)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        # One lookup for both parts: a feature in both is embedded (and range-checked) once.
        union = list({f.name: f for f in self.fm_features + self.deep_features}.values())
        emb = dict(zip((f.name for f in union), self.embedding.embed_many(union, x)))
        fm_fields = stack_fields([emb[f.name] for f in self.fm_features])  # [B, F, D]
        deep = concat_parts([emb[f.name] for f in self.deep_features])  # pieces of [B, deep_dims], read in place
        logit = self.linear(fm_fields.flatten(1)) + self.fm(fm_fields) + self.mlp(deep)
        return logit.squeeze(1)
