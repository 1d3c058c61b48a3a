"""NARM (Li et al., 2017): neural attentive session-based recommendation."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.models.matching.session import SessionModel, session_example
from trainhub.models.registry import register_model
from trainhub.nn.multi_interest import gather_last, left_align

__all__ = ["NARM"]


@register_model("matching", lambda: session_example(hidden_dim=12, emb_dropout_p=0.1, session_rep_dropout_p=0.1))
class NARM(SessionModel):
    """NARM: a GRU's last state (global) and an attention over its states (local), decoded bilinearly.

    Args:
        item_history_feature: the session's item ids (``SequenceFeature``), pre- or post-padded.
        hidden_dim: GRU width.
        emb_dropout_p: dropout on item embeddings.
        session_rep_dropout_p: dropout on the session representation.
        item_feature: optional target-item feature (enables ``"item"`` mode and in-batch negatives).

    ``model(x)`` returns logits over every item ``[B, vocab_size]``.
    """

    def __init__(self, item_history_feature, hidden_dim, emb_dropout_p, session_rep_dropout_p, item_feature=None):
        super().__init__(item_history_feature, item_feature)
        self.emb_dropout = nn.Dropout(emb_dropout_p)
        self.gru = nn.GRU(self.embed_dim, hidden_dim, batch_first=True)
        self.attn_global = nn.Linear(hidden_dim, hidden_dim, bias=False)
        self.attn_local = nn.Linear(hidden_dim, hidden_dim, bias=False)
        self.attn_out = nn.Linear(hidden_dim, 1, bias=False)
        self.rep_dropout = nn.Dropout(session_rep_dropout_p)
        self.decoder = nn.Linear(2 * hidden_dim, self.embed_dim, bias=False)  # bilinear decoding

    def encode(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask, seq = left_align(mask, self.emb_dropout(seq))
        states = self.gru(seq)[0]  # [B, L, H]
        last = gather_last(states, mask)  # [B, H] global encoder
        weights = self.attn_out(torch.sigmoid(self.attn_global(last).unsqueeze(1) + self.attn_local(states)))
        weights = weights.squeeze(-1) * mask  # [B, L], padding gets no weight
        local = torch.einsum("bl,blh->bh", weights, states)  # [B, H] local encoder
        return self.decoder(self.rep_dropout(torch.cat([last, local], dim=1)))  # [B, D]
