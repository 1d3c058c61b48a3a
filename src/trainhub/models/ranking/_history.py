"""Helpers shared by the behaviour-sequence models (DIN, DIEN, BST)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from trainhub.features import SequenceFeature, SparseFeature
from trainhub.nn import EmbeddingCollection, require


def embed_sequence(embedding: EmbeddingCollection, feature: SequenceFeature,
                   x: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpooled sequence embedding ``[B, L, D]`` and its mask ``[B, L]`` (True = real item).

    The feature's ``pooling`` is ignored: attention models need every position.
    """
    if not isinstance(feature, SequenceFeature):
        raise TypeError(f"history feature {feature.name!r} must be a SequenceFeature, got {type(feature).__name__}")
    ids = require(x, feature.name)
    if ids.dim() != 2:
        raise ValueError(f"sequence feature {feature.name!r} expects ids of shape [B, L], got {tuple(ids.shape)}")
    return embedding.lookup(feature, ids), ids != feature.pad_id


def check_pairs(first: Sequence[object], second: Sequence[object], first_name: str, second_name: str) -> None:
    """Raise when two feature lists that are used pairwise differ in length or embedding size."""
    if len(first) != len(second):
        names = [[f.name for f in first], [f.name for f in second]]
        longer, extra = (second_name, names[1][len(first):]) if len(second) > len(first) else (first_name,
                                                                                              names[0][len(second):])
        raise ValueError(
            f"{first_name}s and {second_name}s pair up one to one (the i-th of each go together), got "
            f"{len(first)} {first_name}s {names[0]} and {len(second)} {second_name}s {names[1]}. Pass only the "
            f"{longer}s that have a partner, in the same order"
            + (f"; put the others ({extra}) in `features` only" if longer == "target feature" else "")
            + f". (Torch-RecHub left the extra {longer}s out of the attention.)"
        )
    for a, b in zip(first, second):
        if a.embed_dim != b.embed_dim:
            raise ValueError(
                f"{first_name} {a.name!r} (embed_dim={a.embed_dim}) and {second_name} {b.name!r} "
                f"(embed_dim={b.embed_dim}) must have the same embed_dim"
            )


def check_sparse(features: Sequence[object], what: str) -> None:
    for f in features:
        if not isinstance(f, SparseFeature):
            raise TypeError(f"{what} {f.name!r} must be a SparseFeature, got {type(f).__name__}")
