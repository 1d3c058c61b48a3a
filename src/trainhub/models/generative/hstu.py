"""HSTUModel: a stack of HSTU layers over the item history, scoring every item at every position."""

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
from trainhub.models.registry import register_model
from trainhub.nn.hstu import HSTUBlock, bucketize_time, check_time_bucketing

__all__ = ["HSTUModel"]


def _example():
    kwargs = dict(vocab_size=30, d_model=16, n_heads=2, n_layers=2, dqk=8, dv=8, max_seq_len=8, num_time_buckets=16)
    return kwargs, example_batch(vocab_size=30)


@register_model("generative", _example)
class HSTUModel(LearnedItemTableModel):
    """HSTU (Zhai et al. 2024): generative next-item prediction with pointwise-attention layers.

    Input: item embedding (times ``sqrt(d_model)`` with ``scale_input_embedding``) + position
    embedding + time-bucket embedding, zero on PAD, then dropout and ``n_layers`` HSTU layers
    (:class:`trainhub.nn.HSTUBlock`); output: ``score(hidden)`` against the item table (the input
    table when ``tie_embeddings``), optionally cosine (``score_norm="l2"``), plus a per-item bias,
    divided by ``temperature``. Constructor and parameter names are Torch-RecHub 0.9.0's, so its
    ``model.pth`` loads with ``load_state_dict``.

    Args:
        vocab_size: items including PAD = 0.
        d_model: model width (divisible by ``n_heads``).
        n_heads: attention heads.
        n_layers: HSTU layers.
        dqk: query/key width per head.
        dv: value/gate width per head.
        max_seq_len: longest history read; longer inputs keep their most recent ``max_seq_len``
            positions (never an error; older positions get PAD outputs).
        dropout: on the input embeddings and inside every layer.
        use_time_embedding: add an embedding of each position's bucketed time difference.
        num_time_buckets: time buckets (input embedding and attention bias).
        time_bucket_fn: ``"sqrt"`` or ``"log"`` of the time difference.
        time_bucket_divisor: divides ``fn(t)`` so the buckets cover the data's range.
        time_bucket_unit: ``"minutes"`` (Torch-RecHub's default) or ``"seconds"`` (Meta's
            MovieLens configs).
        tie_embeddings: score against the input item table (else a separate ``[V, D]`` projection).
        score_norm: ``"none"`` (dot product) or ``"l2"`` (cosine).
        temperature: divides the logits.
        use_output_bias: a learned per-item bias on the logits.
        scale_input_embedding: multiply item embeddings by ``sqrt(d_model)``.
        l2_norm_eps: ``eps`` of the L2 normalisation.

    Inputs: ``seq_tokens [B, L]`` left-padded item ids (0 = PAD) and ``time_diffs [B, L]``:
    seconds from one anchor (e.g. the time of the last event) to each item. Pairwise differences
    of these feed the attention bias; ``time_diffs=None`` means all zeros when
    ``use_time_embedding``, and a position-only bias otherwise (Torch-RecHub's rule; with
    ``use_time_embedding=False`` given time differences still feed the attention bias).

    The item table (``token_embedding``, and with it ``output_bias`` or the untied
    ``output_projection``) is dense on a bare model and row-sparse under ``SeqTrainer``
    (``sparse_embeddings=True``, the default): a sampled-softmax step then updates only the rows of
    its input items and candidates, so its cost does not grow with ``vocab_size``; full softmax
    reads every row and stays dense (see :mod:`trainhub.models.generative.item_table`).

    Differences from Torch-RecHub 0.9.0 (both deliberate): position ids are right-aligned (the last
    slot is always ``max_seq_len - 1``), so left padding never changes a real position's logits;
    identical to upstream for length-``max_seq_len`` inputs, which is what its data pipeline makes.
    And longer inputs are cut to the most recent ``max_seq_len`` positions instead of raising.

    Example:
        >>> model = HSTUModel(vocab_size=1000, d_model=64, n_heads=2, n_layers=2, dqk=32, dv=32, max_seq_len=50)
        >>> logits = model(seq_tokens, time_diffs)  # [B, L, 1000]; column 0 is PAD
    """

    def __init__(self, vocab_size: int, d_model: int = 512, n_heads: int = 8, n_layers: int = 4, dqk: int = 64,
                 dv: int = 64, max_seq_len: int = 256, dropout: float = 0.1, use_time_embedding: bool = True,
                 num_time_buckets: int = 128, time_bucket_fn: str = "sqrt", time_bucket_divisor: float = 1.0,
                 time_bucket_unit: str = "minutes", tie_embeddings: bool = True, score_norm: str = "none",
                 temperature: float = 1.0, use_output_bias: bool = True, scale_input_embedding: bool = False,
                 l2_norm_eps: float = 1e-6):
        super().__init__()
        check_dimensions(vocab_size, d_model, n_heads, max_seq_len)
        check_time_bucketing(time_bucket_fn, time_bucket_unit)
        check_score_head(score_norm, temperature)
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.max_seq_len = max_seq_len
        self.use_time_embedding = use_time_embedding
        self.num_time_buckets = num_time_buckets
        self.time_bucket_fn = time_bucket_fn
        self.time_bucket_divisor = time_bucket_divisor
        self.time_bucket_unit = time_bucket_unit
        self.tie_embeddings = tie_embeddings
        self.score_norm = score_norm
        self.temperature = temperature
        self.use_output_bias = use_output_bias
        self.scale_input_embedding = scale_input_embedding
        self.l2_norm_eps = l2_norm_eps

        self.build_item_table(vocab_size, d_model)  # token_embedding: row-sparse under the trainers
        self.position_embedding = nn.Embedding(max_seq_len, d_model)
        if use_time_embedding:
            self.time_embedding = nn.Embedding(num_time_buckets, d_model)  # bucket 0 is a real bucket
        self.hstu_block = HSTUBlock(d_model, n_heads, n_layers, dqk, dv, dropout, max_seq_len, num_time_buckets,
                                    time_bucket_fn, time_bucket_divisor, time_bucket_unit)
        self.build_head(vocab_size, d_model, tie_embeddings, use_output_bias)
        self.dropout = nn.Dropout(dropout)
        init_weights(self)

    def encode(self, seq_tokens: torch.Tensor | Mapping[str, torch.Tensor], time_diffs: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Per-position user states ``[B, L, d_model]`` (zero at PAD positions)."""
        tokens, time_diffs = read_inputs(seq_tokens, time_diffs, self.vocab_size)
        length = tokens.shape[1]
        tokens, time_diffs = recent_window(self, tokens, time_diffs)  # [B, W], W <= max_seq_len
        real = tokens != 0  # [B, W]

        x = self.token_embedding(tokens)  # [B, W, D]
        if self.scale_input_embedding:
            x = x * self.d_model**0.5
        x = x + self.position_embedding(right_aligned_positions(tokens.shape[1], self.max_seq_len, tokens.device))
        if self.use_time_embedding:
            if time_diffs is None:
                time_diffs = torch.zeros_like(tokens)
            x = x + self.time_embedding(bucketize_time(time_diffs, self.num_time_buckets - 1, self.time_bucket_fn,
                                                       self.time_bucket_divisor, self.time_bucket_unit))
        # PAD rows carry nothing in (their position/time embeddings would otherwise leak) ...
        x = self.dropout(x * real.unsqueeze(-1).to(x.dtype))
        hidden = self.hstu_block(x, padding_mask=real, time_diffs=time_diffs)  # [B, W, D]
        # ... and nothing out: every PAD position scores as the bias alone.
        hidden = hidden * real.unsqueeze(-1).to(hidden.dtype)
        return restore_length(hidden, length)
