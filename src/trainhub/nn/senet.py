"""FiBiNET pieces: squeeze-excitation field weighting and bilinear field interactions."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SENETLayer", "BilinearInteraction"]


class SENETLayer(nn.Module):
    """Squeeze-excitation over fields: learn one weight per field from the fields' mean values.

    Args:
        num_fields: number of fields ``F``.
        reduction_ratio: bottleneck factor (hidden width ``max(1, F // reduction_ratio)``).

    Shape:
        ``[B, F, D] -> [B, F, D]``.
    """

    def __init__(self, num_fields: int, reduction_ratio: int = 3):
        super().__init__()
        if reduction_ratio < 1:
            raise ValueError(f"reduction_ratio must be >= 1, got {reduction_ratio}")
        hidden = max(1, num_fields // reduction_ratio)
        self.excitation = nn.Sequential(
            nn.Linear(num_fields, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, num_fields, bias=False), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.excitation(x.mean(dim=-1))  # [B, F]
        return x * weights.unsqueeze(-1)


class BilinearInteraction(nn.Module):
    """Bilinear interaction ``(v_i W) * v_j`` for every field pair ``i < j``.

    Args:
        embed_dim: field embedding size ``D``.
        num_fields: number of fields ``F``.
        bilinear_type: ``"field_all"`` (one ``W`` for all pairs), ``"field_each"`` (one ``W_i`` per
            left field) or ``"field_interaction"`` (one ``W_ij`` per pair).

    Shape:
        ``[B, F, D] -> [B, F(F-1)/2, D]``.
    """

    TYPES = ("field_all", "field_each", "field_interaction")

    def __init__(self, embed_dim: int, num_fields: int, bilinear_type: str = "field_interaction"):
        super().__init__()
        if bilinear_type not in self.TYPES:
            raise ValueError(f"bilinear_type must be one of {self.TYPES}, got {bilinear_type!r}")
        rows, cols = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.bilinear_type = bilinear_type
        count = {"field_all": 1, "field_each": num_fields, "field_interaction": len(rows)}[bilinear_type]
        self.weight = nn.Parameter(torch.empty(count, embed_dim, embed_dim))  # [W, D, D]
        nn.init.xavier_normal_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = x[:, self.rows], x[:, self.cols]  # [B, P, D]
        if self.bilinear_type == "field_all":
            weight = self.weight.expand(len(self.rows), -1, -1)
        elif self.bilinear_type == "field_each":
            weight = self.weight[self.rows]
        else:
            weight = self.weight  # one per pair, already in pair order
        return torch.einsum("bpd,pde->bpe", left, weight) * right  # [B, P, D]
