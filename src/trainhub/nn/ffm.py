"""Field-aware factorization machine pieces (DeepFFM, FAT-DeepFFM)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from trainhub.features import SequenceFeature, SparseFeature
from trainhub.nn.embedding import check_ids, masked_pool, require

__all__ = ["FieldAwareEmbedding", "FFM", "CEN"]


class FieldAwareEmbedding(nn.Module):
    """For every feature, one embedding per field it may interact with: ``[B, F, F, D]``.

    Entry ``[:, i, j]`` is feature ``i``'s embedding for interacting with field ``j``. Each
    feature gets one table of ``vocab_size x (F * D)``, so the feature's own ``embed_dim`` is
    not used (``embed_dim`` here is the model's). Sequence features are mean/sum-pooled over
    their real items (padding ignored).

    Args:
        features: sparse or sequence features (the fields).
        embed_dim: size of each field-aware embedding.
    """

    def __init__(self, features: Sequence[SparseFeature | SequenceFeature], embed_dim: int):
        super().__init__()
        self.features = list(features)
        for f in self.features:
            if not isinstance(f, (SparseFeature, SequenceFeature)):
                raise TypeError(
                    f"field-aware embeddings need sparse or sequence features; {f.name!r} is {type(f).__name__}")
        self.num_fields = len(self.features)
        self.embed_dim = embed_dim
        self.tables = nn.ModuleDict()
        for f in self.features:
            if f.table_name in self.tables:
                continue
            table = nn.Embedding(f.vocab_size, self.num_fields * embed_dim)
            f.initializer.init_(table.weight)
            self.tables[f.table_name] = table

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        out = []
        for f in self.features:
            ids = require(x, f.name)
            table = self.tables[f.table_name]
            check_ids(f.name, ids, table.num_embeddings)
            emb = table(ids.long())  # [B, F*D] or [B, L, F*D]
            if isinstance(f, SequenceFeature):
                if ids.dim() != 2:
                    raise ValueError(f"sequence feature {f.name!r} expects ids of shape [B, L], got {tuple(ids.shape)}")
                mode = "sum" if f.pooling == "sum" else "mean"
                emb = masked_pool(emb, ids != f.pad_id, mode)
            elif emb.dim() == 3 and emb.shape[1] == 1:
                emb = emb.squeeze(1)
            out.append(emb.reshape(-1, self.num_fields, self.embed_dim))
        return torch.stack(out, dim=1)  # [B, F, F, D]


class FFM(nn.Module):
    """Pairwise field-aware interactions ``v_{i,j} * v_{j,i}`` for ``i < j``.

    Args:
        num_fields: number of fields ``F``.
        reduce_sum: sum each product over ``D`` (``[B, P]``) instead of keeping it (``[B, P, D]``).

    Shape:
        ``[B, F, F, D] -> [B, F(F-1)/2, D]`` (or ``[B, F(F-1)/2]``).
    """

    def __init__(self, num_fields: int, reduce_sum: bool = False):
        super().__init__()
        self.reduce_sum = reduce_sum
        rows, cols = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        crosses = x[:, self.rows, self.cols] * x[:, self.cols, self.rows]  # [B, P, D]
        return crosses.sum(dim=-1) if self.reduce_sum else crosses


class CEN(nn.Module):
    """Compose-excitation network of FAT-DeepFFM: attention weights over the field crosses.

    Compose: a learned weighted sum over ``D`` turns each cross vector into one number.
    Excitation: a two-layer bottleneck (``P -> P / reduction_ratio -> P``) maps those numbers to
    one weight per cross, which rescales the cross vectors.

    Args:
        embed_dim: size ``D`` of each cross vector.
        num_field_crosses: number ``P`` of crosses.
        reduction_ratio: bottleneck factor of the excitation.

    Shape:
        ``[B, P, D] -> [B, P * D]`` (flattened, ready for an MLP).
    """

    def __init__(self, embed_dim: int, num_field_crosses: int, reduction_ratio: int = 1):
        super().__init__()
        if reduction_ratio < 1:
            raise ValueError(f"reduction_ratio must be >= 1, got {reduction_ratio}")
        hidden = max(1, num_field_crosses // reduction_ratio)
        self.compose = nn.Linear(embed_dim, 1, bias=False)
        self.excitation = nn.Sequential(
            nn.Linear(num_field_crosses, hidden), nn.ReLU(), nn.Linear(hidden, num_field_crosses), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summary = self.compose(x).squeeze(-1)  # [B, P]
        weights = self.excitation(summary)  # [B, P]
        return (x * weights.unsqueeze(-1)).flatten(1)  # [B, P*D]
