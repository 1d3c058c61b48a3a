"""DeepFFM and FAT-DeepFFM (Zhang et al., 2019): field-aware pairwise interactions fed to an MLP,
optionally re-weighted by a compose-excitation attention network."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.models import toy
from trainhub.models.registry import register_model
from trainhub.nn import CEN, FFM, MLP, EmbeddingCollection, FieldAwareEmbedding


def _linear_and_cross():
    linear = toy.sparse_features(embed_dim=1) + toy.dense_features()
    cross = toy.sparse_features() + toy.history_features()[:1]
    return linear, cross


def _example_deepffm():
    linear, cross = _linear_and_cross()
    kwargs = dict(linear_features=linear, cross_features=cross, embed_dim=4, mlp_params={"dims": [16], "dropout": 0.1})
    return kwargs, toy.batch()


def _example_fat():
    linear, cross = _linear_and_cross()
    kwargs = dict(linear_features=linear, cross_features=cross, embed_dim=4, reduction_ratio=2,
                  mlp_params={"dims": [16], "dropout": 0.1})
    return kwargs, toy.batch()


class _FFMBase(nn.Module):
    """Shared body: linear part (sum of the linear features' embeddings) + MLP over FFM crosses."""

    def __init__(self, linear_features, cross_features, embed_dim, mlp_params):
        super().__init__()
        self.linear_features = list(linear_features)
        self.cross_features = list(cross_features)
        if len(self.cross_features) < 2:
            raise ValueError("DeepFFM needs at least two cross_features to form an interaction")
        self.num_fields = len(self.cross_features)
        self.num_field_cross = self.num_fields * (self.num_fields - 1) // 2
        self.linear_embedding = EmbeddingCollection(self.linear_features)
        self.ffm_embedding = FieldAwareEmbedding(self.cross_features, embed_dim)
        self.ffm = FFM(self.num_fields, reduce_sum=False)
        self.mlp_out = MLP(self.num_field_cross * embed_dim, **mlp_params)
        self.b = nn.Parameter(torch.zeros(1))

    def crosses(self, crosses: torch.Tensor) -> torch.Tensor:
        """``[B, P, D] -> [B, P*D]``; FAT-DeepFFM re-weights here."""
        return crosses.flatten(1)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        # Linear part: each linear feature's (usually 1-d) embedding, summed (FAT-DeepFFM Eq. 5).
        y_linear = self.linear_embedding(x, self.linear_features, squeeze_dim=True).sum(1, keepdim=True)  # [B, 1]
        crosses = self.ffm(self.ffm_embedding(x))  # [B, P, D]
        y_ffm = self.mlp_out(self.crosses(crosses))  # [B, 1]
        return (y_linear + y_ffm).squeeze(1) + self.b


@register_model("ranking", _example_deepffm)
class DeepFFM(_FFMBase):
    """DeepFFM.

    Args:
        linear_features: features of the linear part; their embeddings are summed (give them
            ``embed_dim=1`` for a classic linear term; dense features add their value).
        cross_features: sparse/sequence features of the field-aware part. Each gets its own
            table of ``vocab_size x (num_fields * embed_dim)``: one vector per field it meets.
            (Torch-RecHub expects ``vocab_size`` multiplied by the number of fields because it
            offsets ids into one table; such features work here too, with unused rows.)
        embed_dim: size of each field-aware embedding.
        mlp_params: keyword arguments of :class:`trainhub.nn.MLP` over the flattened crosses.

    Returns logits ``[B]``.
    """

    def __init__(self, linear_features, cross_features, embed_dim, mlp_params):
        super().__init__(linear_features, cross_features, embed_dim, mlp_params)


@register_model("ranking", _example_fat)
class FatDeepFFM(_FFMBase):
    """FAT-DeepFFM: DeepFFM whose crosses are re-weighted by a compose-excitation network.

    Args:
        linear_features: as in :class:`DeepFFM`.
        cross_features: as in :class:`DeepFFM`.
        embed_dim: size of each field-aware embedding.
        reduction_ratio: bottleneck factor of the excitation network.
        mlp_params: keyword arguments of :class:`trainhub.nn.MLP`.

    Returns logits ``[B]``.
    """

    def __init__(self, linear_features, cross_features, embed_dim, reduction_ratio, mlp_params):
        super().__init__(linear_features, cross_features, embed_dim, mlp_params)
        self.cen = CEN(embed_dim, self.num_field_cross, reduction_ratio)

    def crosses(self, crosses: torch.Tensor) -> torch.Tensor:
        return self.cen(crosses)
