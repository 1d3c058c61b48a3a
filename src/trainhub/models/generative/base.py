"""What the generative next-item models share: reading inputs, the recent window, scoring.

The models differ in their sequence encoder only. Input handling (left padding, PAD = 0, the most
recent ``max_seq_len`` positions, right-aligned positions) and the scoring head (``score_norm``,
``temperature``, output bias) are written here once, so "HSTU vs SASRec" compares encoders.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from trainhub.models import toy
from trainhub.models.generative.item_table import ItemEmbedding, gather_item_rows
from trainhub.nn.fused_table import is_tracing

__all__ = [
    "PAD",
    "SCORE_NORMS",
    "NextItemModel",
    "read_inputs",
    "recent_window",
    "right_aligned_positions",
    "restore_length",
    "score_items",
    "check_score_head",
    "init_weights",
    "example_batch",
    "LearnedItemTableModel",
]

logger = logging.getLogger(__name__)

PAD = 0
SCORE_NORMS = ("none", "l2")


@runtime_checkable
class NextItemModel(Protocol):
    """The interface of every model in :mod:`trainhub.models.generative` (see its docstring)."""

    vocab_size: int
    max_seq_len: int

    @property
    def item_embeddings(self) -> torch.Tensor: ...

    def encode(self, seq_tokens: torch.Tensor, time_diffs: torch.Tensor | None = None) -> torch.Tensor: ...

    def score(self, hidden: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor: ...

    def forward(self, seq_tokens: torch.Tensor, time_diffs: torch.Tensor | None = None) -> torch.Tensor: ...


def read_inputs(seq_tokens: torch.Tensor | Mapping[str, torch.Tensor], time_diffs: torch.Tensor | None,
                vocab_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check ``seq_tokens [B, L]`` (ids in ``[0, vocab_size)``) and ``time_diffs [B, L]``.

    ``seq_tokens`` may also be a batch dict with ``"seq_tokens"`` and optionally ``"time_diffs"``
    (or ``"seq_time_diffs"``): what :func:`trainhub.models.create_model`'s examples and the model
    sweep feed. Value checks are skipped while tracing/exporting (they read ids on the host).
    """
    if isinstance(seq_tokens, Mapping):
        batch = seq_tokens
        if "seq_tokens" not in batch:
            raise KeyError(f"a generative model's batch dict needs 'seq_tokens'; it has {sorted(batch)}")
        seq_tokens = batch["seq_tokens"]
        if time_diffs is None:
            time_diffs = batch.get("time_diffs", batch.get("seq_time_diffs"))
    if seq_tokens.dim() != 2:
        raise ValueError(f"seq_tokens must be [batch, seq_len] item ids; got shape {tuple(seq_tokens.shape)}")
    if seq_tokens.is_floating_point():
        raise TypeError(f"seq_tokens must hold integer item ids, got {seq_tokens.dtype}")
    if time_diffs is not None and time_diffs.shape != seq_tokens.shape:
        raise ValueError(f"time_diffs {tuple(time_diffs.shape)} must have the shape of seq_tokens "
                         f"{tuple(seq_tokens.shape)} (one time difference per position)")
    if not is_tracing() and seq_tokens.numel():
        low, high = (int(v) for v in torch.aminmax(seq_tokens))
        if high >= vocab_size:
            raise ValueError(f"seq_tokens holds item id {high} but vocab_size is {vocab_size}: ids must be in "
                             f"[0, vocab_size) with 0 = PAD; build the model with vocab_size >= {high + 1}")
        if low < 0:
            raise ValueError(f"seq_tokens holds a negative item id ({low}); ids must be in [0, {vocab_size})")
    return seq_tokens, time_diffs


def recent_window(model: nn.Module, seq_tokens: torch.Tensor, time_diffs: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The most recent ``model.max_seq_len`` positions (all of them when the sequence fits).

    Longer sequences are never an error: the model reads the last ``max_seq_len`` items and
    :func:`restore_length` gives the older positions PAD outputs. Logged once per model.
    """
    limit = model.max_seq_len
    if not is_tracing() and seq_tokens.shape[1] > limit and not getattr(model, "_warned_long_input", False):
        logger.warning("%s: sequences of length %d exceed max_seq_len=%d; the model reads the most recent %d "
                       "positions and gives older ones PAD outputs", type(model).__name__, seq_tokens.shape[1],
                       limit, limit)
        model._warned_long_input = True
    # A constant slice: a no-op for short inputs, and it exports with a dynamic sequence axis.
    return seq_tokens[:, -limit:], None if time_diffs is None else time_diffs[:, -limit:]


def right_aligned_positions(length: int, max_seq_len: int, device: torch.device) -> torch.Tensor:
    """Position ids ``[L]`` counted so that the last slot is always ``max_seq_len - 1``.

    With left padding the most recent item sits in the last slot, so its position id never depends
    on how much padding the row carries; for ``L == max_seq_len`` (Torch-RecHub's fixed-length
    windows) these are the plain ``0..L-1``.
    """
    return torch.arange(length, device=device) + (max_seq_len - length)


def restore_length(hidden: torch.Tensor, length: int) -> torch.Tensor:
    """Zero rows in front of ``hidden [B, W, D]`` up to ``length`` positions (PAD outputs)."""
    if is_tracing() or hidden.shape[1] < length:
        return F.pad(hidden, (0, 0, length - hidden.shape[1], 0))
    return hidden


def check_dimensions(vocab_size: int, d_model: int, n_heads: int, max_seq_len: int) -> None:
    """The sizes every next-item model shares, each error naming the value."""
    if d_model % n_heads != 0:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}).")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must count PAD (0) and at least one item, got {vocab_size}")
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be positive, got {max_seq_len}")


def check_score_head(score_norm: str, temperature: float) -> None:
    if score_norm not in SCORE_NORMS:
        raise ValueError(f"score_norm must be 'none' or 'l2', got {score_norm!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


def _plain_gather(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return F.embedding(ids, table) if table.dim() == 2 else table[ids]


def score_items(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                item_ids: torch.Tensor | None = None, *, l2_norm: bool = False, eps: float = 1e-6,
                temperature: float = 1.0,
                gather: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Logits of items for user states: ``(norm(h) · norm(w_i) + b_i) / temperature``.

    Args:
        hidden: user states ``[..., D]``.
        weight: item table ``[V, D]``; ``bias``: ``[V]`` or None.
        item_ids: None scores every item (``[..., V]``); ids ``[N]`` are candidates shared by every
            row (``[..., N]``); ids ``[..., N]`` (batch dims broadcastable with ``hidden``'s) are
            each row's own candidates (``[..., N]``).
        l2_norm: cosine scores (both sides L2-normalised with ``eps``).
        temperature: divides the logits (bias included, as Torch-RecHub).
        gather: ``gather(table, ids) -> table[ids]`` reads the candidates' rows of ``weight`` and
            entries of ``bias`` (default plain indexing; the learned-table models pass
            :func:`~trainhub.models.generative.item_table.gather_item_rows` for row-sparse gradients).

    Any column of the candidate forms equals the same column of the full form.
    """
    if l2_norm:
        hidden = F.normalize(hidden, p=2, dim=-1, eps=eps)
    if item_ids is None:
        if l2_norm:
            weight = F.normalize(weight, p=2, dim=-1, eps=eps)
        logits = F.linear(hidden, weight, bias)  # [..., V]
    else:
        take = gather or _plain_gather
        rows = take(weight, item_ids)  # [..., N, D]
        if l2_norm:
            rows = F.normalize(rows, p=2, dim=-1, eps=eps)
        if item_ids.dim() == 1:  # shared candidates: one matmul
            logits = F.linear(hidden, rows)  # [..., N]
        else:  # per-row candidates
            logits = torch.matmul(rows, hidden.unsqueeze(-1)).squeeze(-1)  # [..., N]
        if bias is not None:
            logits = logits + take(bias, item_ids)
    if temperature != 1.0:
        logits = logits / temperature
    return logits


def init_weights(model: nn.Module) -> None:
    """Xavier-uniform for every matrix (embeddings and linear weights), zeros for biases, as
    Torch-RecHub; LayerNorms and bias tables keep their own init. Then PAD rows back to zero."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding, ItemEmbedding)):
            nn.init.xavier_uniform_(module.weight)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, (nn.Embedding, ItemEmbedding)) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()


def example_batch(vocab_size: int = toy.VOCAB["item_id"], batch_size: int = toy.BATCH_SIZE,
                  seq_len: int = toy.SEQ_LEN, seed: int = 0) -> dict[str, torch.Tensor]:
    """Left-padded ``seq_tokens [B, L]`` and anchor-relative ``time_diffs [B, L]`` (seconds, 0 on
    PAD) for model examples and tests; every row has at least one item."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, vocab_size, (batch_size, seq_len), generator=g)
    lengths = torch.randint(1, seq_len + 1, (batch_size,), generator=g)
    real = torch.arange(seq_len) >= (seq_len - lengths).unsqueeze(1)  # [B, L] left padding
    gaps = torch.randint(30, 200_000, (batch_size, seq_len), generator=g)
    # Seconds before the last event: decreasing along the row, 0 at the most recent item.
    time_diffs = gaps.flip(1).cumsum(1).flip(1) - gaps[:, -1:]
    return {"seq_tokens": tokens * real, "time_diffs": time_diffs * real}


class LearnedItemTableModel(nn.Module):
    """The scoring head of a model whose item table is learned (HSTU, SASRec): subclasses build
    ``token_embedding`` with :meth:`build_item_table` and call :meth:`build_head`, then implement
    ``encode``.

    ``tie_embeddings`` scores against ``token_embedding`` (its PAD row is zero, so PAD scores as the
    bias alone) plus ``output_bias [V]``; otherwise ``output_projection = Linear(D, V)``. Names are
    Torch-RecHub's HSTU ones, so its checkpoints load.

    The item table is an :class:`~trainhub.models.generative.item_table.ItemEmbedding`: dense on a
    bare model, row-sparse once a trainer switches it (``SeqTrainer``'s ``sparse_embeddings=True``,
    the default), together with the head's item-indexed parameters (``output_bias``, or
    ``output_projection``'s weight and bias). Then a sampled-softmax step
    (``score(hidden, item_ids)``) gives gradients to the input tokens' and the candidates' rows
    only, and the row-wise optimizer updates just those rows; a full-softmax step scores every item,
    so its gradient (and update) is dense, see :mod:`~trainhub.models.generative.item_table`.
    """

    vocab_size: int
    max_seq_len: int
    score_norm: str
    temperature: float
    l2_norm_eps: float

    def build_item_table(self, vocab_size: int, d_model: int) -> None:
        """``token_embedding``: the ``[V, D]`` item table, PAD = row 0 (``nn.Embedding``'s names)."""
        self.token_embedding = ItemEmbedding(vocab_size, d_model, padding_idx=0)

    def build_head(self, vocab_size: int, d_model: int, tie_embeddings: bool, use_output_bias: bool) -> None:
        if tie_embeddings:
            self.output_projection = None
            self.output_bias = nn.Parameter(torch.zeros(vocab_size)) if use_output_bias else None
            head = (self.output_bias,)
        else:
            self.output_projection = nn.Linear(d_model, vocab_size, bias=use_output_bias)
            self.output_bias = None
            head = (self.output_projection.weight, self.output_projection.bias)
        # The head's item rows switch between dense and row-sparse with the item table.
        self.token_embedding.link(*head)

    @property
    def item_embeddings(self) -> torch.Tensor:
        """The ``[V, D]`` item table :meth:`score` reads (before any L2 normalisation)."""
        return self.token_embedding.weight if self.output_projection is None else self.output_projection.weight

    @property
    def item_bias(self) -> torch.Tensor | None:
        """The ``[V]`` per-item logit bias (None without one)."""
        return self.output_bias if self.output_projection is None else self.output_projection.bias

    def encode(self, seq_tokens: torch.Tensor, time_diffs: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def score(self, hidden: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[..., V]`` (``item_ids=None``) or ``[..., N]`` for candidates ``[N]`` / ``[..., N]``
        (see :func:`score_items`)."""
        return score_items(hidden, self.item_embeddings, self.item_bias, item_ids, l2_norm=self.score_norm == "l2",
                           eps=self.l2_norm_eps, temperature=self.temperature, gather=gather_item_rows)

    def forward(self, seq_tokens: torch.Tensor | Mapping[str, torch.Tensor], time_diffs: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Next-item logits ``[B, L, vocab_size]`` at every position (column 0 = PAD, not masked)."""
        return self.score(self.encode(seq_tokens, time_diffs))
