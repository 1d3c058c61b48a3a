"""Sequence helpers and multi-interest extractors used by matching models.

Sequences arrive padded with a pad id either before (Torch-RecHub's default ``padding="pre"``) or
after the items. The helpers here work for both, so no model assumes one layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["interest_scores", "last_valid_index", "gather_last", "left_align", "squash", "CapsuleRouting",
           "SelfAttentiveInterests"]


def interest_scores(user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Score every user against every item: ``[B, D]`` or ``[B, K, D]`` x ``[N, D]`` -> ``[B, N]``.

    Multi-interest users score an item with their best interest for it (max over interests).
    """
    if user.dim() == 2:
        return user @ items.T
    return torch.einsum("bkd,nd->bkn", user, items).max(dim=1).values


def last_valid_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last true position of each row of ``mask [B, L]`` (0 for an all-false row)."""
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    return (mask.long() * positions).argmax(dim=1)  # [B]


def gather_last(seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The vector at the last real position: ``seq [B, L, D]`` -> ``[B, D]``."""
    idx = last_valid_index(mask)
    return seq[torch.arange(seq.shape[0], device=seq.device), idx]


def left_align(mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Move the real positions of every row to the front, keeping their order.

    Recurrent and causal layers then read real items first whatever the padding side was.

    Args:
        mask: ``[B, L]`` true at real positions.
        *tensors: ``[B, L, ...]`` tensors permuted the same way.

    Returns:
        ``(aligned_mask, *aligned_tensors)``.
    """
    # Sorting "is padding, then position" puts real items first in their original order. The keys
    # are unique, so a plain sort gives the stable order (a stable sort does not export to ONNX).
    length = mask.shape[1]
    key = (~mask).long() * length + torch.arange(length, device=mask.device)  # [B, L]
    order = key.argsort(dim=1)  # [B, L]
    out = [mask.gather(1, order)]
    for t in tensors:
        index = order.view(*order.shape, *([1] * (t.dim() - 2))).expand_as(t)
        out.append(t.gather(1, index))
    return tuple(out)


def squash(z: torch.Tensor, dim: int = -1, eps: float = 1e-9) -> torch.Tensor:
    """Capsule non-linearity: keeps the direction, maps the norm into ``[0, 1)``."""
    norm_sq = z.pow(2).sum(dim=dim, keepdim=True)
    return z * (norm_sq / (1 + norm_sq)) / torch.sqrt(norm_sq + eps)


class CapsuleRouting(nn.Module):
    """Behaviour-to-interest dynamic routing (MIND, ComiRec-DR).

    Args:
        embed_dim: size ``D`` of behaviour and interest vectors.
        interest_num: number of interest capsules ``K``.
        max_length: longest sequence accepted (the fixed initial routing logits have this length).
        num_iters: routing iterations.
        shared_bilinear: one ``D x D`` map shared by all interests (MIND) or one per interest
            (ComiRec-DR).

    Shapes: ``seq [B, L, D]``, ``mask [B, L]`` -> ``[B, K, D]``.
    """

    def __init__(self, embed_dim: int, interest_num: int, max_length: int, num_iters: int = 3,
                 shared_bilinear: bool = True):
        super().__init__()
        self.interest_num = interest_num
        self.max_length = max_length
        self.num_iters = num_iters
        self.shared_bilinear = shared_bilinear
        if shared_bilinear:
            self.bilinear = nn.Parameter(torch.empty(embed_dim, embed_dim))
        else:
            self.bilinear = nn.Parameter(torch.empty(interest_num, embed_dim, embed_dim))
        nn.init.normal_(self.bilinear, std=embed_dim ** -0.5)
        # Fixed random initial logits (the paper draws them once); a buffer keeps eval deterministic.
        self.register_buffer("init_logits", torch.randn(interest_num, max_length), persistent=True)

    def forward(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, _ = seq.shape
        if length > self.max_length:
            raise ValueError(f"sequence length {length} exceeds max_length={self.max_length} of the capsule layer")
        if self.shared_bilinear:
            hat = (seq @ self.bilinear).unsqueeze(1).expand(-1, self.interest_num, -1, -1)  # [B, K, L, D]
        else:
            hat = torch.einsum("bld,kde->bkle", seq, self.bilinear)  # [B, K, L, D]
        hat_fixed = hat.detach()  # routing coefficients do not back-propagate (only the last pass does)
        keep = mask.unsqueeze(1).to(seq.dtype)  # [B, 1, L]
        logits = self.init_logits[:, :length].unsqueeze(0).expand(batch, -1, -1)  # [B, K, L]
        for i in range(self.num_iters):
            weights = torch.softmax(logits, dim=1) * keep  # couple each behaviour to the interests
            source = hat if i == self.num_iters - 1 else hat_fixed
            interests = squash(torch.einsum("bkl,bkld->bkd", weights, source))  # [B, K, D]
            if i < self.num_iters - 1:
                logits = logits + torch.einsum("bkld,bkd->bkl", hat_fixed, interests)
        return interests


class SelfAttentiveInterests(nn.Module):
    """ComiRec-SA interest extractor: ``K`` attention heads over the sequence.

    ``A = softmax_L(W2 tanh(W1 H))``, interests ``= A H``. Padding positions get no weight.

    Shapes: ``seq [B, L, D]``, ``mask [B, L]`` -> ``[B, K, D]``.
    """

    def __init__(self, embed_dim: int, interest_num: int, hidden_dim: int | None = None):
        super().__init__()
        hidden_dim = hidden_dim or 4 * embed_dim
        self.proj = nn.Linear(embed_dim, hidden_dim, bias=False)
        self.heads = nn.Linear(hidden_dim, interest_num, bias=False)

    def forward(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.heads(torch.tanh(self.proj(seq)))  # [B, L, K]
        # A large finite negative (not -inf) keeps an all-padding row finite.
        scores = scores.masked_fill(~mask.unsqueeze(-1), -1e9)
        attn = F.softmax(scores, dim=1)  # [B, L, K]
        return torch.einsum("blk,bld->bkd", attn, seq)
