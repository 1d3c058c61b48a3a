"""STAMP (Liu et al., 2018): short-term attention/memory priority for session recommendation."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.models.matching.session import SessionModel, session_example
from trainhub.models.registry import register_model
from trainhub.nn import masked_pool
from trainhub.nn.multi_interest import gather_last

__all__ = ["STAMP"]


@register_model("matching", lambda: session_example(weight_std=0.05, emb_std=0.05))
class STAMP(SessionModel):
    """STAMP: attention over the session steered by the last click and the session mean.

    Args:
        item_history_feature: the session's item ids (``SequenceFeature``), pre- or post-padded.
        weight_std: std of the normal initialisation of the layers.
        emb_std: std of the normal initialisation of the item table.
        item_feature: optional target-item feature (enables ``"item"`` mode and in-batch negatives).

    ``model(x)`` returns trilinear logits over every item ``[B, vocab_size]``.
    """

    def __init__(self, item_history_feature, weight_std, emb_std, item_feature=None):
        super().__init__(item_history_feature, item_feature)
        dim = self.embed_dim
        self.w_item, self.w_last, self.w_mean = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.attn_bias = nn.Parameter(torch.zeros(dim))
        self.attn_out = nn.Linear(dim, 1, bias=False)
        self.mlp_a, self.mlp_b = nn.Linear(dim, dim), nn.Linear(dim, dim)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, weight_std)
        nn.init.normal_(self.item_table.weight, 0.0, emb_std)
        if self.item_history_feature.padding_idx is not None:
            with torch.no_grad():
                self.item_table.weight[self.item_history_feature.padding_idx].zero_()

    def encode(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        last = gather_last(seq, mask)  # [B, D] x_t
        mean = masked_pool(seq, mask, "mean")  # [B, D] m_s
        hidden = torch.sigmoid(self.w_item(seq) + (self.w_last(last) + self.w_mean(mean)).unsqueeze(1) + self.attn_bias)
        alpha = self.attn_out(hidden).squeeze(-1) * mask  # [B, L]
        attended = torch.einsum("bl,bld->bd", alpha, seq)  # m_a
        return torch.tanh(self.mlp_a(attended)) * torch.tanh(self.mlp_b(last))  # h_s * h_t
