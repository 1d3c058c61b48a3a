"""SASRec (Kang & McAuley, 2018): causal self-attention over the item history."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.features import SequenceFeature
from trainhub.models import toy
from trainhub.models.matching.base import MatchModel, as_list, lookup_ids, stack_candidates
from trainhub.models.registry import register_model
from trainhub.nn import EmbeddingCollection, require
from trainhub.nn.multi_interest import gather_last, left_align

__all__ = ["SASRec"]


def _example():
    features = {f.name: f for f in toy.sparse_features()}
    kwargs = dict(features=[toy.history_features(pooling="concat")[0]], max_len=toy.SEQ_LEN, dropout_rate=0.1,
                  num_blocks=1, num_heads=2, item_feature=features["item_id"],
                  neg_item_feature=toy.neg_items_feature())
    return kwargs, toy.match_batch()


class _Block(nn.Module):
    """Pre-norm causal self-attention + position-wise feed-forward, both residual."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim),
                                 nn.Dropout(dropout))

    def forward(self, h: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        q = self.attn_norm(h)
        h = h + self.attn(q, q, q, attn_mask=causal, need_weights=False)[0]
        return h + self.ffn(self.ffn_norm(h))


@register_model("matching", _example)
class SASRec(MatchModel):
    """SASRec.

    Args:
        features: ``[history]`` or Torch-RecHub's ``[history, pos_seq, neg_seq]``: ``SequenceFeature``
            s (``pooling="concat"``) of any names (Torch-RecHub read ``x["seq"]`` whatever the
            name); positive/negative sequences give per-position next-item targets.
        max_len: longest history; size of the position table.
        dropout_rate: dropout on embeddings, attention and feed-forward.
        num_blocks: attention blocks.
        num_heads: attention heads (must divide ``embed_dim``).
        item_feature: the target item (``SparseFeature`` sharing the history table): enables
            ``"item"`` mode, in-batch negatives and candidate scoring.
        neg_item_feature: negatives ``[B, K]`` for candidate scoring.
        temperature: scores are divided by it.

    ``model(x)`` returns, with ``item_feature`` and ``neg_item_feature``, list-wise logits
    ``[B, 1 + K]`` from the last position; otherwise, with pos/neg sequences, per-position
    ``(pos_logits [B, L], neg_logits [B, L], mask [B, L])`` that the pair-wise and list-wise
    losses average over the real positions only. Sequences may be pre- or post-padded; the
    position embedding counts back from the most recent item.
    """

    def __init__(self, features, max_len: int = 50, dropout_rate: float = 0.5, num_blocks: int = 2,
                 num_heads: int = 1, item_feature=None, neg_item_feature=None, temperature: float = 1.0):
        super().__init__(temperature)
        self.features = as_list(features)
        if len(self.features) not in (1, 3) or not all(isinstance(f, SequenceFeature) for f in self.features):
            raise ValueError("SASRec features must be [history] or [history, pos_seq, neg_seq] SequenceFeatures")
        self.seq_feature = self.features[0]
        self.item_feature = as_list(item_feature)[0] if item_feature is not None else None
        self.neg_item_feature = as_list(neg_item_feature)[0] if neg_item_feature is not None else None
        extra = [f for f in (self.item_feature, self.neg_item_feature) if f is not None]
        self.embedding = EmbeddingCollection(self.features + extra)
        dim = self.seq_feature.embed_dim
        self.max_len = max_len
        self.position = nn.Embedding(max_len, dim)
        self.emb_dropout = nn.Dropout(dropout_rate)
        self.blocks = nn.ModuleList(_Block(dim, num_heads, dropout_rate) for _ in range(num_blocks))
        self.last_norm = nn.LayerNorm(dim, eps=1e-8)

    def encode(self, x: dict[str, torch.Tensor], *aligned: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """States ``[B, L, D]`` and mask of the left-aligned history; ``aligned`` tensors get the same permutation."""
        ids = require(x, self.seq_feature.name)
        if ids.shape[1] > self.max_len:
            raise ValueError(f"feature {self.seq_feature.name!r} has length {ids.shape[1]} > max_len={self.max_len}")
        seq = lookup_ids(self.embedding, self.seq_feature, x) * self.seq_feature.embed_dim ** 0.5
        mask, seq, *aligned = left_align(ids != self.seq_feature.pad_id, seq, *aligned)
        length = ids.shape[1]
        steps = torch.arange(length, device=ids.device)
        recency = (mask.sum(dim=1, keepdim=True) - 1 - steps).clamp_min(0)  # [B, L]: 0 = most recent item
        keep = mask.unsqueeze(-1).to(seq.dtype)
        h = self.emb_dropout(seq + self.position(recency)) * keep
        causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).triu(1)  # True = may not attend
        for block in self.blocks:
            h = block(h, causal) * keep
        return (self.last_norm(h), mask, *aligned)

    def user_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        states, mask = self.encode(x)
        return gather_last(states, mask)  # [B, D]

    def item_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.item_feature is None:
            raise ValueError("SASRec was built without item_feature, so it cannot embed target items")
        return lookup_ids(self.embedding, self.item_feature, x)

    def scores(self, x: dict[str, torch.Tensor]):
        if self.item_feature is not None and self.neg_item_feature is not None:
            candidates = stack_candidates(self.item_tower(x), lookup_ids(self.embedding, self.neg_item_feature, x))
            return torch.einsum("bd,bcd->bc", self.user_tower(x), candidates) / self.temperature  # [B, 1+K]
        if len(self.features) == 3:
            pos_f, neg_f = self.features[1], self.features[2]
            pos_ids, neg_ids = require(x, pos_f.name), require(x, neg_f.name)
            states, mask, pos_ids, neg_ids = self.encode(x, pos_ids, neg_ids)
            pos = (states * self.embedding.lookup(pos_f, pos_ids)).sum(-1) / self.temperature  # [B, L]
            neg = (states * self.embedding.lookup(neg_f, neg_ids)).sum(-1) / self.temperature
            return pos, neg, mask & (pos_ids != pos_f.pad_id)
        raise ValueError("SASRec needs item_feature and neg_item_feature, or [history, pos_seq, neg_seq] features, "
                         "to produce training scores")
