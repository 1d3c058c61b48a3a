"""FiBiNET (Huang et al., 2019): squeeze-excitation field weighting plus bilinear interactions,
fed to an MLP."""

from __future__ import annotations

import logging

import torch
from torch import nn

from trainhub.features import DenseFeature
from trainhub.models import toy
from trainhub.models.registry import register_model
from trainhub.nn import MLP, BilinearInteraction, EmbeddingCollection, SENETLayer

log = logging.getLogger(__name__)


def _example():
    features = toy.sparse_features() + toy.history_features()
    kwargs = dict(features=features, mlp_params={"dims": [16, 8], "dropout": 0.1}, reduction_ratio=2,
                  bilinear_type="field_each")
    return kwargs, toy.batch()


@register_model("ranking", _example)
class FiBiNet(nn.Module):
    """FiBiNET.

    Both the raw field embeddings and their SENET-reweighted version go through the bilinear
    layer; the two sets of pair vectors are concatenated into the MLP.

    Args:
        features: sparse/sequence features, one shared ``embed_dim`` (the fields; at least two).
            Dense features are ignored with a warning, as Torch-RecHub ignores them silently.
        mlp_params: keyword arguments of :class:`trainhub.nn.MLP` (ends in the output layer).
        reduction_ratio: SENET bottleneck factor.
        bilinear_type: ``"field_all"``, ``"field_each"`` or ``"field_interaction"``.
        **kwargs: accepted for Torch-RecHub compatibility and ignored.

    Returns logits ``[B]``.
    """

    def __init__(self, features, mlp_params, reduction_ratio=3, bilinear_type="field_interaction", **kwargs):
        super().__init__()
        dense = [f.name for f in features if isinstance(f, DenseFeature)]
        if dense:
            # Torch-RecHub's examples pass dense features too and its embedding layer drops them
            # silently; keep that behaviour for ported code, but say so.
            log.warning("FiBiNet ignores dense features %s (it interacts embedded fields only)", dense)
        self.features = [f for f in features if not isinstance(f, DenseFeature)]
        if len(self.features) < 2:
            raise ValueError("FiBiNet needs at least two features to form an interaction")
        num_fields = len(self.features)
        embed_dim = self.features[0].embed_dim
        self.embedding = EmbeddingCollection(self.features)
        self.senet = SENETLayer(num_fields, reduction_ratio)
        self.bilinear = BilinearInteraction(embed_dim, num_fields, bilinear_type)
        self.mlp = MLP(num_fields * (num_fields - 1) * embed_dim, **mlp_params)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        fields = self.embedding(x, self.features)  # [B, F, D]
        plain = self.bilinear(fields)  # [B, P, D]
        weighted = self.bilinear(self.senet(fields))  # [B, P, D]
        return self.mlp(torch.cat([plain, weighted], dim=1).flatten(1)).squeeze(1)
