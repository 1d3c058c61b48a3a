"""VocabMask: keep items that must never be recommended (PAD, retired items, the user's history)
out of a ranking."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["VocabMask", "MASKED_LOGIT"]

# Torch-RecHub's value: far below any real logit, yet finite (so softmax and top-k stay NaN-free).
MASKED_LOGIT = -1e9


class VocabMask(nn.Module):
    """Push fixed and per-row invalid item ids to ``-1e9`` in a logit tensor.

    Args:
        vocab_size: items including PAD.
        invalid_items: ids never to recommend (``[0]`` drops PAD); ids outside ``[0, vocab_size)``
            are ignored.

    Example:
        >>> mask = VocabMask(vocab_size, invalid_items=[0])
        >>> top = mask.apply_mask(logits[:, -1], invalid_ids=history).topk(10).indices  # unseen items
    """

    def __init__(self, vocab_size: int, invalid_items: Iterable[int] | None = None):
        super().__init__()
        self.vocab_size = vocab_size
        mask = torch.ones(vocab_size, dtype=torch.bool)  # True = may be recommended
        if invalid_items is not None:
            ids = torch.as_tensor(list(invalid_items), dtype=torch.long)
            mask[ids[(ids >= 0) & (ids < vocab_size)]] = False
        self.register_buffer("mask", mask)

    def apply_mask(self, logits: torch.Tensor, invalid_ids: torch.Tensor | None = None) -> torch.Tensor:
        """A masked copy of ``logits [..., V]``.

        Args:
            logits: item vocabulary on the last axis; ``[B, V]`` when ``invalid_ids`` is given.
            invalid_ids: per-row ids to mask, ``[B, N]`` (e.g. each user's history), or ``[N]`` for
                every row. PAD (0) and out-of-range entries mask column 0.

        Raises:
            ValueError: ``invalid_ids`` with logits that are not ``[B, V]``, or a batch mismatch.
        """
        masked = logits.masked_fill(~self.mask.to(logits.device), MASKED_LOGIT)
        if invalid_ids is None:
            return masked
        invalid_ids = invalid_ids.to(device=masked.device, dtype=torch.long)
        if invalid_ids.dim() == 1:
            invalid_ids = invalid_ids.unsqueeze(0).expand(masked.shape[0], -1)
        if masked.dim() != 2 or invalid_ids.dim() != 2:
            raise ValueError(f"per-row invalid_ids masking expects logits [B, V] and invalid_ids [B, N]; got "
                             f"{tuple(logits.shape)} and {tuple(invalid_ids.shape)}")
        if invalid_ids.shape[0] != masked.shape[0]:
            raise ValueError(f"invalid_ids has {invalid_ids.shape[0]} rows, logits {masked.shape[0]}")
        # Out-of-range ids (e.g. -1 padding) land on column 0, PAD, as in Torch-RecHub: never an
        # index error, and PAD is no recommendation anyway.
        valid = (invalid_ids >= 0) & (invalid_ids < self.vocab_size)
        return masked.scatter(-1, invalid_ids.masked_fill(~valid, 0), MASKED_LOGIT)
