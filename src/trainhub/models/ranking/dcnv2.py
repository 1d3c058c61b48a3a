"""DCN-V2 (Wang et al., 2021): full-rank or low-rank-mixture cross network, stacked or parallel
with an MLP."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.models import toy
from trainhub.models.registry import register_model
from trainhub.nn import LR, MLP, CrossNetMix, CrossNetV2, EmbeddingCollection


def _example():
    features = toy.sparse_features() + toy.dense_features() + toy.history_features()
    kwargs = dict(features=features, n_cross_layers=2, mlp_params={"dims": [16, 8]},
                  model_structure="stacked", low_rank=4, num_experts=2)
    return kwargs, toy.batch()


@register_model("ranking", _example)
class DCNv2(nn.Module):
    """DCN-V2.

    Args:
        features: every input feature (concatenated into one vector).
        n_cross_layers: number of cross layers.
        mlp_params: keyword arguments of :class:`trainhub.nn.MLP` (hidden part; no output layer).
        model_structure: ``"parallel"`` (cross and MLP side by side) or ``"stacked"`` (MLP on the
            cross output).
        use_low_rank_mixture: use the low-rank mixture of experts (``CrossNetMix``) instead of
            full-rank cross layers.
        low_rank: rank of each expert.
        num_experts: number of experts.

    Returns logits ``[B]``.
    """

    def __init__(self, features, n_cross_layers, mlp_params, model_structure="parallel",
                 use_low_rank_mixture=True, low_rank=32, num_experts=4, **kwargs):
        super().__init__()
        if model_structure not in ("parallel", "stacked"):
            raise ValueError(f"model_structure must be 'parallel' or 'stacked', got {model_structure!r}")
        self.features = list(features)
        self.model_structure = model_structure
        dims = sum(f.embed_dim for f in self.features)
        self.embedding = EmbeddingCollection(self.features)
        if use_low_rank_mixture:
            self.crossnet = CrossNetMix(dims, n_cross_layers, low_rank=low_rank, num_experts=num_experts)
        else:
            self.crossnet = CrossNetV2(dims, n_cross_layers)
        self.mlp = MLP(dims, output_layer=False, **mlp_params)
        head_dim = self.mlp.output_dim + (dims if model_structure == "parallel" else 0)
        self.linear = LR(head_dim)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        embed = self.embedding(x, self.features, squeeze_dim=True)  # [B, dims]
        cross = self.crossnet(embed)
        if self.model_structure == "stacked":
            out = self.mlp(cross)
        else:
            out = torch.cat([cross, self.mlp(embed)], dim=1)
        return self.linear(out).squeeze(1)
