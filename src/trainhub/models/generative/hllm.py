"""HLLMModel: a causal user transformer over frozen, pre-computed item embeddings (HLLM's user LLM)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainhub.integrity import verify_file
from trainhub.models.generative.base import (
    check_dimensions,
    example_batch,
    init_weights,
    read_inputs,
    recent_window,
    restore_length,
    right_aligned_positions,
    score_items,
)
from trainhub.models.generative.transformer import CausalTransformerBlock, causal_attention_mask
from trainhub.models.registry import register_model
from trainhub.nn.hstu import RelPosBias, bucketize_time, check_time_bucketing

__all__ = ["HLLMModel", "load_item_embeddings"]

_TENSOR_KEYS = ("item_embeddings", "embeddings", "weight")


def load_item_embeddings(source: torch.Tensor | str | os.PathLike) -> torch.Tensor:
    """An item-embedding matrix from a tensor/array or a file, without running pickled code.

    Files: ``.safetensors`` (needs the ``safetensors`` package), or anything ``torch.save`` wrote,
    read with ``torch.load(weights_only=True)``. A file may hold the tensor itself or a dict with
    one tensor (or one under ``item_embeddings`` / ``embeddings`` / ``weight``). A file with an
    ``integrity.json`` record beside it (trainhub wrote it) is checked against the record first.
    """
    if not isinstance(source, (str, os.PathLike)):
        return torch.as_tensor(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"item_embeddings file {path} does not exist")
    verify_file(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(f"reading {path} needs the safetensors package: pip install safetensors") from err
        loaded = load_file(str(path))
    else:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, torch.Tensor):
        return loaded
    if isinstance(loaded, Mapping):
        tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        if len(tensors) == 1:
            return next(iter(tensors.values()))
        for key in _TENSOR_KEYS:
            if key in tensors:
                return tensors[key]
        raise ValueError(f"{path} holds several tensors ({sorted(tensors)[:10]}); keep one, or name it one of "
                         f"{_TENSOR_KEYS}")
    raise TypeError(f"{path} holds a {type(loaded).__name__}, not an item-embedding tensor")


def _example():
    g = torch.Generator().manual_seed(1)
    kwargs = dict(item_embeddings=torch.randn(30, 16, generator=g), vocab_size=30, d_model=16, n_heads=2, n_layers=2,
                  max_seq_len=8, num_time_buckets=64)
    return kwargs, example_batch(vocab_size=30)


@register_model("generative", _example)
class HLLMModel(nn.Module):
    """HLLM's user model (Chen et al. 2024, ByteDance) over item embeddings computed offline by an LLM.

    The item table is frozen and L2-normalised once (a buffer, not a parameter). The user side:
    item embedding + position embedding + time-bucket embedding, dropout, ``n_layers`` pre-norm
    causal transformer blocks (softmax attention with a bucketed relative-position bias, ReLU FFN
    of width ``4 * d_model``). Logits are cosine similarities divided by ``temperature``
    (``[-1/T, 1/T]``), so a loss on them should not scale again.

    Args:
        item_embeddings: ``[vocab_size, d_model]`` tensor (row ``i`` = item id ``i``, row 0 = PAD),
            or a path to one (see :func:`load_item_embeddings`: no pickled code is run).
        vocab_size: items including PAD.
        d_model: width; must equal the embeddings' width.
        n_heads: attention heads (divide ``d_model``).
        n_layers: transformer blocks.
        max_seq_len: longest history read; longer inputs keep their most recent positions.
        dropout: on embeddings, attention and feed-forward.
        use_rel_pos_bias: add :class:`trainhub.nn.hstu.RelPosBias` to the attention scores.
        use_time_embedding: add an embedding of each position's bucketed time difference.
        num_time_buckets: time buckets (``sqrt`` or ``log`` of minutes, bucket 0 adds nothing).
        time_bucket_fn: ``"sqrt"`` or ``"log"``.
        temperature: divides the cosine logits (0.07: HLLM's ``logit_scale = log(1/0.07)``).

    Differences from Torch-RecHub 0.9.0: padded keys are masked (upstream attends to them, so its
    logits change with the padding), position ids are right-aligned (identical for
    length-``max_seq_len`` inputs), and longer inputs keep their last ``max_seq_len`` positions
    instead of failing. Its checkpoints load (separate Q/K/V/O projections are fused on load).
    """

    def __init__(self, item_embeddings: torch.Tensor | str | os.PathLike, vocab_size: int, d_model: int = 512,
                 n_heads: int = 8, n_layers: int = 4, max_seq_len: int = 256, dropout: float = 0.1,
                 use_rel_pos_bias: bool = True, use_time_embedding: bool = True, num_time_buckets: int = 2048,
                 time_bucket_fn: str = "sqrt", temperature: float = 0.07):
        super().__init__()
        check_dimensions(vocab_size, d_model, n_heads, max_seq_len)
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        check_time_bucketing(time_bucket_fn)
        table = load_item_embeddings(item_embeddings)
        if table.dim() != 2:
            raise ValueError(f"item_embeddings must be [vocab_size, d_model], got shape {tuple(table.shape)}")
        if table.shape[0] != vocab_size:
            raise ValueError(f"item_embeddings.shape[0]={table.shape[0]} != vocab_size={vocab_size}. The tensor must "
                             "be indexed by token id (row i = item i, row 0 = PAD).")
        if table.shape[1] != d_model:
            raise ValueError(f"item_embeddings.shape[1]={table.shape[1]} != d_model={d_model}")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.max_seq_len = max_seq_len
        self.use_rel_pos_bias = use_rel_pos_bias
        self.use_time_embedding = use_time_embedding
        self.num_time_buckets = num_time_buckets
        self.time_bucket_fn = time_bucket_fn
        self.temperature = temperature

        # Frozen, so normalise once; a zero PAD row stays zero.
        self.register_buffer("item_embeddings", F.normalize(table.detach().float(), dim=-1, eps=1e-8))
        self.position_embedding = nn.Embedding(max_seq_len, d_model)
        if use_time_embedding:
            # padding_idx=0: the shortest gaps (and missing times) add nothing.
            self.time_embedding = nn.Embedding(num_time_buckets + 1, d_model, padding_idx=0)
        self.transformer_blocks = nn.ModuleList(
            CausalTransformerBlock(d_model, n_heads, dropout) for _ in range(n_layers))
        self.rel_pos_bias = RelPosBias(n_heads, max_seq_len) if use_rel_pos_bias else None
        self.dropout = nn.Dropout(dropout)
        init_weights(self)

    def encode(self, seq_tokens: torch.Tensor | Mapping[str, torch.Tensor], time_diffs: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Per-position user states ``[B, L, d_model]`` (not normalised; zero at PAD positions)."""
        tokens, time_diffs = read_inputs(seq_tokens, time_diffs, self.vocab_size)
        length = tokens.shape[1]
        tokens, time_diffs = recent_window(self, tokens, time_diffs)  # [B, W]
        real = tokens != 0
        x = F.embedding(tokens, self.item_embeddings)  # [B, W, D]
        x = x + self.position_embedding(right_aligned_positions(tokens.shape[1], self.max_seq_len, tokens.device))
        if self.use_time_embedding:
            if time_diffs is None:  # bucket 0, as Torch-RecHub (a zero row unless a checkpoint says otherwise)
                time_diffs = torch.zeros_like(tokens)
            x = x + self.time_embedding(bucketize_time(time_diffs, self.num_time_buckets - 1, self.time_bucket_fn))
        x = self.dropout(x)
        bias = self.rel_pos_bias(tokens.shape[1]) if self.rel_pos_bias is not None else None  # [1, H, W, W]
        mask = causal_attention_mask(real, bias)  # once, for every block
        for block in self.transformer_blocks:
            x = block(x, mask)
        return restore_length(x * real.unsqueeze(-1).to(x.dtype), length)

    def score(self, hidden: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Cosine logits / temperature: ``[..., V]`` (``item_ids=None``) or ``[..., N]`` for candidates."""
        hidden = F.normalize(hidden, dim=-1, eps=1e-8)  # the table is normalised already
        return score_items(hidden, self.item_embeddings, None, item_ids, temperature=self.temperature)

    def forward(self, seq_tokens: torch.Tensor | Mapping[str, torch.Tensor], time_diffs: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Next-item logits ``[B, L, vocab_size]`` at every position (column 0 = PAD, not masked)."""
        return self.score(self.encode(seq_tokens, time_diffs))
