"""Feature specs: what a column is, never how it is embedded.

Feature objects are frozen dataclasses that hold no ``nn.Module``. Every model builds its own
embedding tables from them (see :class:`trainhub.nn.EmbeddingCollection`), so two models built
from one feature list never share weights by accident.

Example:
    >>> from trainhub.features import SparseFeature, DenseFeature, SequenceFeature
    >>> user = SparseFeature("user_id", vocab_size=1000, embed_dim=16)
    >>> hist = SequenceFeature("hist_item", vocab_size=5000, embed_dim=16, pooling="mean")
    >>> age = DenseFeature("age")
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Union

import torch

__all__ = [
    "RandomNormal",
    "RandomUniform",
    "XavierNormal",
    "XavierUniform",
    "SparseFeature",
    "SequenceFeature",
    "DenseFeature",
    "Feature",
    "auto_embed_dim",
]


# ---------------------------------------------------------------------------------------------
# Initializers: small immutable recipes applied to an embedding weight in place.
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RandomNormal:
    mean: float = 0.0
    std: float = 1e-4

    def init_(self, weight: torch.Tensor) -> None:
        torch.nn.init.normal_(weight, self.mean, self.std)


@dataclass(frozen=True)
class RandomUniform:
    minval: float = -0.05
    maxval: float = 0.05

    def init_(self, weight: torch.Tensor) -> None:
        torch.nn.init.uniform_(weight, self.minval, self.maxval)


@dataclass(frozen=True)
class XavierNormal:
    gain: float = 1.0

    def init_(self, weight: torch.Tensor) -> None:
        torch.nn.init.xavier_normal_(weight, self.gain)


@dataclass(frozen=True)
class XavierUniform:
    gain: float = 1.0

    def init_(self, weight: torch.Tensor) -> None:
        torch.nn.init.xavier_uniform_(weight, self.gain)


def auto_embed_dim(vocab_size: int) -> int:
    """Rule of thumb used when ``embed_dim`` is omitted: ``floor(6 * vocab_size ** 0.25)``."""
    return int(math.floor(6 * vocab_size**0.25))


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"feature name must be a non-empty string, got {name!r}")


class _IdFeature:
    """Validation and helpers shared by id-valued features (sparse and sequence)."""

    def __post_init__(self) -> None:
        _check_name(self.name)
        if int(self.vocab_size) < 1:
            raise ValueError(f"feature {self.name!r}: vocab_size must be >= 1, got {self.vocab_size}")
        if self.embed_dim is None:
            object.__setattr__(self, "embed_dim", auto_embed_dim(self.vocab_size))
        if self.padding_idx is not None and not 0 <= self.padding_idx < self.vocab_size:
            raise ValueError(
                f"feature {self.name!r}: padding_idx {self.padding_idx} outside [0, {self.vocab_size})"
            )

    @property
    def table_name(self) -> str:
        """Name of the embedding table this feature reads (its own, or the shared one)."""
        return self.shared_with or self.name


@dataclass(frozen=True)
class SparseFeature(_IdFeature):
    """A categorical feature given as integer ids in ``[0, vocab_size)``; input shape ``[B]``.

    Args:
        name: column name in the input dict.
        vocab_size: number of distinct ids (ids must be ``< vocab_size``).
        embed_dim: embedding size; ``None`` picks ``floor(6 * vocab_size ** 0.25)``.
        shared_with: name of another feature whose table this one reuses.
        padding_idx: id whose embedding is zero and receives no gradient.
        initializer: how the table is initialised.
    """

    name: str
    vocab_size: int
    embed_dim: int | None = None
    shared_with: str | None = None
    padding_idx: int | None = None
    initializer: object = field(default_factory=RandomNormal)


@dataclass(frozen=True)
class SequenceFeature(_IdFeature):
    """A padded sequence of ids, input shape ``[B, L]``, pooled to one vector per row.

    Padding positions are ignored by ``"mean"`` and ``"sum"`` pooling. The padding id is
    ``padding_idx`` when given, else ``0`` (the value :func:`trainhub.data.pad_sequences` pads with).
    ``"concat"`` keeps the whole sequence, ``[B, L, D]``.
    """

    name: str
    vocab_size: int
    embed_dim: int | None = None
    pooling: str = "mean"
    shared_with: str | None = None
    padding_idx: int | None = None
    initializer: object = field(default_factory=RandomNormal)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pooling not in ("mean", "sum", "concat"):
            raise ValueError(
                f"feature {self.name!r}: pooling must be 'mean', 'sum' or 'concat', got {self.pooling!r}"
            )

    @property
    def pad_id(self) -> int:
        return 0 if self.padding_idx is None else self.padding_idx


@dataclass(frozen=True)
class DenseFeature:
    """A numeric feature: input shape ``[B]`` (or ``[B, embed_dim]`` for a vector)."""

    name: str
    embed_dim: int = 1

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.embed_dim < 1:
            raise ValueError(f"feature {self.name!r}: embed_dim must be >= 1, got {self.embed_dim}")


Feature = Union[SparseFeature, SequenceFeature, DenseFeature]
