"""Attention layers for behaviour sequences and field interactions.

Every layer that attends over a padded sequence takes a boolean ``mask [B, L]`` (True = real
item) and gives padding positions exactly zero weight, so the result does not depend on how much
padding a row carries.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from trainhub.nn.mlp import MLP

__all__ = ["masked_softmax", "TargetAttention", "InteractingLayer"]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` where ``mask`` is true; masked entries get weight 0.

    A row with no true entry gives all zeros (not NaN), so an empty history contributes nothing.
    """
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=dim)
    return torch.nan_to_num(weights, nan=0.0)  # all -inf rows give NaN; they carry no weight


class TargetAttention(nn.Module):
    """DIN's activation unit: weight each history item by its relevance to the target item.

    The score of item ``h`` for target ``t`` is an MLP over ``[t, h, t - h, t * h]``; the output is
    the score-weighted sum of the history. Padding positions get weight 0 (with or without
    softmax), which Torch-RecHub's unit does not do.

    Args:
        embed_dim: size of the item (and target) embedding.
        dims: hidden widths of the scoring MLP.
        activation: activation of the scoring MLP (``"dice"`` as in the paper).
        use_softmax: normalise the scores over the real items; off by default, as in DIN, so the
            weights keep the intensity of the user's interest.
        dropout: dropout inside the scoring MLP.

    Shape:
        history ``[B, L, D]``, target ``[B, D]``, mask ``[B, L]`` -> ``[B, D]``.
    """

    def __init__(self, embed_dim: int, dims: Sequence[int] | None = None, activation: str = "dice",
                 use_softmax: bool = False, dropout: float = 0.0):
        super().__init__()
        self.embed_dim = embed_dim
        self.use_softmax = use_softmax
        self.scorer = MLP(4 * embed_dim, output_layer=True, dims=list(dims) if dims is not None else [36],
                          activation=activation, dropout=dropout)

    def scores(self, history: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention weights ``[B, L]`` (zero at padding)."""
        batch, length, dim = history.shape
        target = target.unsqueeze(1).expand(-1, length, -1)  # [B, L, D]
        features = torch.cat([target, history, target - history, target * history], dim=-1)  # [B, L, 4D]
        if self.training:
            # Score real positions only, so padding stays out of the scorer's batch statistics
            # (BatchNorm/Dice).
            raw = features.new_zeros(batch, length).masked_scatter(mask, self.scorer(features[mask]).squeeze(-1))
        else:
            # Rows are scored independently in eval mode, so score every position and zero the
            # padding below: the same values, with no data-dependent shape (this path exports).
            raw = self.scorer(features.flatten(0, 1)).view(batch, length)  # [B, L]
        if self.use_softmax:
            return masked_softmax(raw, mask)
        return raw * mask.to(raw.dtype)

    def forward(self, history: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = self.scores(history, target, mask)  # [B, L]
        return (weights.unsqueeze(-1) * history).sum(dim=1)  # [B, D]


class InteractingLayer(nn.Module):
    """AutoInt's interacting layer: multi-head self-attention over fields, with a residual projection.

    Args:
        embed_dim: field embedding size (the output keeps it; heads split it).
        num_heads: attention heads; must divide ``embed_dim``.
        dropout: dropout on the attention weights.
        residual: add ``W_res x`` before the ReLU, as in the paper.

    Shape:
        ``[B, F, D] -> [B, F, D]``.
    """

    def __init__(self, embed_dim: int, num_heads: int = 2, dropout: float = 0.0, residual: bool = True):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.query = nn.Linear(embed_dim, embed_dim, bias=False)
        self.key = nn.Linear(embed_dim, embed_dim, bias=False)
        self.value = nn.Linear(embed_dim, embed_dim, bias=False)
        self.residual = nn.Linear(embed_dim, embed_dim, bias=False) if residual else None
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, fields, _ = x.shape
        return x.reshape(batch, fields, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, F, d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        weights = torch.softmax(q @ k.transpose(-1, -2) / self.head_dim**0.5, dim=-1)  # [B, H, F, F]
        out = (self.dropout(weights) @ v).transpose(1, 2).reshape(x.shape)  # [B, F, D]
        if self.residual is not None:
            out = out + self.residual(x)
        return torch.relu(out)
