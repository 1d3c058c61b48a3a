"""SINE (Tan et al., 2021): sparse-interest network with a learned concept pool."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainhub.models import toy
from trainhub.models.matching.base import MatchModel, as_list, stack_candidates
from trainhub.models.registry import register_model
from trainhub.nn import check_ids, require

__all__ = ["SINE"]


def _example():
    features = {f.name: f for f in toy.sparse_features()}
    kwargs = dict(history_features=[toy.history_features(pooling="concat")[0]], item_features=[features["item_id"]],
                  neg_item_features=[toy.neg_items_feature()], num_items=toy.VOCAB["item_id"], embedding_dim=8,
                  hidden_dim=16, num_concept=6, num_intention=2, seq_max_len=toy.SEQ_LEN, num_heads=2,
                  temperature=0.1)
    return kwargs, toy.match_batch()


def _column(feature) -> str:
    return feature if isinstance(feature, str) else feature.name


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over positions (dim 1) of ``scores [B, L, H]`` ignoring padding."""
    return F.softmax(scores.masked_fill(~mask.unsqueeze(-1), -1e9), dim=1)


@register_model("matching", _example)
class SINE(MatchModel):
    """SINE.

    Args:
        history_features: the item-id history (one ``SequenceFeature``, or its column name as in
            Torch-RecHub's example; id 0 is padding).
        item_features: the target item (one ``SparseFeature`` or column name).
        neg_item_features: negatives ``[B, K]`` for list-wise training (feature or column name).
        num_items: size of the item table, shared by history, target and negatives.
        embedding_dim: item embedding size ``D``.
        hidden_dim: width of the attention layers.
        num_concept: size ``C`` of the concept pool.
        num_intention: concepts activated per user ``K``.
        seq_max_len: longest history (size of the position table).
        num_heads: heads of the concept-activation attention (averaged).
        temperature: scores (and the interest-aggregation softmax) are divided by it.

    ``model(x)`` returns list-wise logits ``[B, 1 + K_neg]``; ``"user"`` mode returns the
    aggregated user vector ``[B, D]`` that serving retrieves with.
    """

    def __init__(self, history_features, item_features, neg_item_features, num_items, embedding_dim, hidden_dim,
                 num_concept, num_intention, seq_max_len, num_heads: int = 1, temperature: float = 1.0):
        super().__init__(temperature)
        self.history_feature = as_list(history_features)[0]
        self.item_feature = as_list(item_features)[0]
        negs = as_list(neg_item_features)
        self.neg_item_feature = negs[0] if negs else None
        # The item table is the model's own (num_items rows), so a bare column name is enough.
        self.history_name, self.item_name = _column(self.history_feature), _column(self.item_feature)
        self.neg_item_name = _column(self.neg_item_feature) if negs else None
        if num_intention > num_concept:
            raise ValueError(f"num_intention ({num_intention}) cannot exceed num_concept ({num_concept})")
        self.num_items, self.num_intention, self.seq_max_len = num_items, num_intention, seq_max_len
        dim = embedding_dim
        self.item_table = nn.Embedding(num_items, dim, padding_idx=0)
        self.position = nn.Embedding(seq_max_len, dim)
        self.concepts = nn.Parameter(torch.randn(num_concept, dim) * dim ** -0.5)
        self.activation = nn.Sequential(nn.Linear(dim, hidden_dim, bias=False), nn.Tanh(),
                                        nn.Linear(hidden_dim, num_heads, bias=False))
        self.assign = nn.Linear(dim, dim, bias=False)
        self.assign_norm, self.concept_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.interest_norm = nn.LayerNorm(dim)
        self.weighting = nn.Sequential(nn.Linear(dim, hidden_dim, bias=False), nn.Tanh(),
                                       nn.Linear(hidden_dim, num_intention, bias=False))
        self.aggregate = nn.Sequential(nn.Linear(dim, hidden_dim, bias=False), nn.Tanh(),
                                       nn.Linear(hidden_dim, 1, bias=False))

    def _items(self, name: str, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = require(x, name)
        check_ids(name, ids, self.num_items)
        return self.item_table(ids.long()), ids

    def user_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        seq, ids = self._items(self.history_name, x)  # [B, L, D]
        if ids.shape[1] > self.seq_max_len:
            raise ValueError(f"history length {ids.shape[1]} exceeds seq_max_len={self.seq_max_len}")
        mask = ids != 0
        steps = torch.arange(ids.shape[1], device=ids.device)
        last = (mask.long() * (steps + 1)).argmax(dim=1, keepdim=True)  # index of the most recent item
        seq = seq + self.position((last - steps).clamp_min(0)) * mask.unsqueeze(-1)
        # 1. concept activation: a self-attentive summary picks the user's top-K concepts.
        heads = self.activation[-1].out_features
        summary = torch.einsum("blh,bld->bd", _masked_softmax(self.activation(seq), mask), seq) / heads
        gate, top = (summary @ self.concepts.T).topk(self.num_intention, dim=1)  # [B, K]
        concepts = self.concepts[top] * torch.sigmoid(gate).unsqueeze(-1)  # [B, K, D]
        # 2. intention assignment P(k|t) and 3. attention weighting P(t|k).
        p_k_t = F.softmax(torch.einsum("bld,bkd->blk", self.assign_norm(self.assign(seq)),
                                       self.concept_norm(concepts)), dim=-1)  # [B, L, K]
        p_t_k = _masked_softmax(self.weighting(seq), mask)  # [B, L, K]
        interests = self.interest_norm(torch.einsum("blk,bld->bkd", p_k_t * p_t_k, seq))  # [B, K, D]
        # 4. aggregation: attend over the predicted intention sequence, weight interests by it.
        predicted = torch.einsum("blk,bkd->bld", p_k_t, concepts)  # [B, L, D]
        current = torch.einsum("blo,bld->bd", _masked_softmax(self.aggregate(predicted), mask), predicted)
        weights = F.softmax(torch.einsum("bkd,bd->bk", interests, current) / self.temperature, dim=1)
        return torch.einsum("bk,bkd->bd", weights, interests)  # [B, D]

    def item_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        emb, ids = self._items(self.item_name, x)
        return emb.reshape(ids.shape[0], -1)

    def scores(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.neg_item_feature is None:
            raise ValueError("SINE needs neg_item_features for list-wise training (or train with in_batch_neg=True)")
        candidates = stack_candidates(self.item_tower(x), self._items(self.neg_item_name, x)[0])
        return torch.einsum("bd,bcd->bc", self.user_tower(x), candidates) / self.temperature  # [B, 1+K]
