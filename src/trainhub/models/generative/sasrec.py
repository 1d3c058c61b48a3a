"""SASRecModel: SASRec's causal softmax self-attention with the generative models' interface."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from trainhub.models.generative.base import (
    LearnedItemTableModel,
    check_dimensions,
    check_score_head,
    example_batch,
    init_weights,
    read_inputs,
    recent_window,
    restore_length,
    right_aligned_positions,
)
from trainhub.models.generative.transformer import CausalTransformerBlock, causal_attention_mask
from trainhub.models.registry import register_model

__all__ = ["SASRecModel"]


def _example():
    kwargs = dict(vocab_size=30, d_model=16, n_heads=2, n_layers=2, max_seq_len=8)
    return kwargs, example_batch(vocab_size=30)


@register_model("generative", _example)
class SASRecModel(LearnedItemTableModel):
    """SASRec (Kang & McAuley 2018) as a generative next-item model: ``HSTUModel``'s interface.

    Item embedding (times ``sqrt(d_model)``, as the paper) + learned position embedding, dropout,
    ``n_layers`` pre-norm causal transformer blocks (softmax attention, ReLU feed-forward of width
    ``ffn_dim``), a final LayerNorm, and the same scoring head as :class:`HSTUModel`
    (``tie_embeddings``, ``score_norm``, ``temperature``, ``use_output_bias``). Shared arguments
    have HSTUModel's names and defaults, so swapping the model name compares encoders of the same
    width. (The matching-family ``trainhub.models.matching.SASRec`` is Torch-RecHub's feature-dict
    SASRec; this one reads ``seq_tokens``.)

    Args:
        vocab_size: items including PAD = 0.
        d_model: width (divisible by ``n_heads``).
        n_heads: attention heads.
        n_layers: transformer blocks.
        max_seq_len: longest history read; longer inputs keep their most recent positions.
        dropout: on embeddings, attention and feed-forward.
        ffn_dim: feed-forward hidden width (default ``d_model``, as the paper).
        tie_embeddings, score_norm, temperature, use_output_bias, l2_norm_eps: the scoring head,
            as in :class:`HSTUModel`.
        scale_input_embedding: multiply item embeddings by ``sqrt(d_model)`` (SASRec does).

    ``time_diffs`` are accepted and ignored (SASRec has no time signal), so both models take the
    same batches. The item table is row-sparse under ``SeqTrainer``, as :class:`HSTUModel`'s.
    """

    def __init__(self, vocab_size: int, d_model: int = 512, n_heads: int = 8, n_layers: int = 4,
                 max_seq_len: int = 256, dropout: float = 0.1, ffn_dim: int | None = None, tie_embeddings: bool = True,
                 score_norm: str = "none", temperature: float = 1.0, use_output_bias: bool = True,
                 scale_input_embedding: bool = True, l2_norm_eps: float = 1e-6):
        super().__init__()
        check_dimensions(vocab_size, d_model, n_heads, max_seq_len)
        check_score_head(score_norm, temperature)
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.max_seq_len = max_seq_len
        self.tie_embeddings = tie_embeddings
        self.score_norm = score_norm
        self.temperature = temperature
        self.use_output_bias = use_output_bias
        self.scale_input_embedding = scale_input_embedding
        self.l2_norm_eps = l2_norm_eps

        self.build_item_table(vocab_size, d_model)  # token_embedding: row-sparse under the trainers
        self.position_embedding = nn.Embedding(max_seq_len, d_model)
        self.blocks = nn.ModuleList(
            CausalTransformerBlock(d_model, n_heads, dropout, ffn_dim or d_model) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.build_head(vocab_size, d_model, tie_embeddings, use_output_bias)
        self.dropout = nn.Dropout(dropout)
        init_weights(self)

    def encode(self, seq_tokens: torch.Tensor | Mapping[str, torch.Tensor], time_diffs: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Per-position user states ``[B, L, d_model]`` (zero at PAD positions)."""
        tokens, _ = read_inputs(seq_tokens, time_diffs, self.vocab_size)
        length = tokens.shape[1]
        tokens, _ = recent_window(self, tokens, None)  # [B, W]
        real = tokens != 0
        x = self.token_embedding(tokens)  # [B, W, D]
        if self.scale_input_embedding:
            x = x * self.d_model**0.5
        x = x + self.position_embedding(right_aligned_positions(tokens.shape[1], self.max_seq_len, tokens.device))
        x = self.dropout(x * real.unsqueeze(-1).to(x.dtype))
        mask = causal_attention_mask(real)  # [B, 1, W, W], shared by every block
        for block in self.blocks:
            x = block(x, mask)
        hidden = self.final_norm(x) * real.unsqueeze(-1).to(x.dtype)
        return restore_length(hidden, length)
