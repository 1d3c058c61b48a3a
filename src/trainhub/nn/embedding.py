"""Embedding tables built from feature specs, with input checks and masked sequence pooling."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from trainhub.features import DenseFeature, SequenceFeature, SparseFeature

__all__ = ["EmbeddingCollection", "masked_pool", "check_ids", "require"]


def require(x: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    """Return ``x[name]`` or raise a KeyError that names the missing feature and what is there."""
    try:
        return x[name]
    except KeyError:
        raise KeyError(
            f"feature {name!r} is missing from the batch; the batch has {sorted(x)[:20]}"
        ) from None


def check_ids(name: str, ids: torch.Tensor, vocab_size: int) -> None:
    """Raise a ValueError naming the feature and the bad id when an id is outside ``[0, vocab_size)``."""
    if ids.is_floating_point():
        raise TypeError(f"feature {name!r}: ids must be integers, got dtype {ids.dtype}")
    if ids.numel() == 0:
        return
    low, high = torch.aminmax(ids)
    if low < 0 or high >= vocab_size:
        bad = int(low) if low < 0 else int(high)
        raise ValueError(
            f"feature {name!r}: id {bad} is outside [0, vocab_size={vocab_size}); "
            f"encode the column or raise vocab_size"
        )


def masked_pool(emb: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool ``emb [B, L, D]`` over positions where ``mask [B, L]`` is true.

    Mean pooling divides by the number of real items (at least 1, so an all-padding row gives 0).
    """
    mask = mask.unsqueeze(-1).to(emb.dtype)  # [B, L, 1]
    summed = (emb * mask).sum(dim=1)  # [B, D]
    if mode == "sum":
        return summed
    if mode == "mean":
        return summed / mask.sum(dim=1).clamp_min(1.0)
    raise ValueError(f"unknown pooling {mode!r}")


class EmbeddingCollection(nn.Module):
    """One ``nn.Embedding`` per table, for every sparse and sequence feature given.

    Features with ``shared_with`` read the table of the feature they name. Calling the collection
    embeds a subset of the features:

    * ``squeeze_dim=False`` (default): ``[B, F, D]`` for sparse and pooled sequence features (all
      must share one ``embed_dim``); a ``"concat"`` sequence feature must be embedded alone and
      gives ``[B, L, D]``.
    * ``squeeze_dim=True``: ``[B, sum of dims]``, dense values appended after the embeddings.

    Args:
        features: every feature the model may embed (dense ones are accepted and ignored).
        check_inputs: verify ids are in range and name the feature when they are not.
    """

    def __init__(self, features: Sequence[object], check_inputs: bool = True):
        super().__init__()
        self.check_inputs = check_inputs
        self.tables = nn.ModuleDict()
        specs: dict[str, SparseFeature | SequenceFeature] = {}
        for f in features:
            if isinstance(f, (SparseFeature, SequenceFeature)) and f.shared_with is None:
                specs.setdefault(f.name, f)
        for f in features:
            if isinstance(f, (SparseFeature, SequenceFeature)) and f.shared_with is not None:
                if f.shared_with not in specs:
                    raise ValueError(
                        f"feature {f.name!r} is shared_with {f.shared_with!r}, which is not in the feature list"
                    )
        for name, f in specs.items():
            table = nn.Embedding(f.vocab_size, f.embed_dim, padding_idx=f.padding_idx)
            f.initializer.init_(table.weight)
            if f.padding_idx is not None:
                with torch.no_grad():
                    table.weight[f.padding_idx].zero_()
            self.tables[name] = table

    def lookup(self, feature: SparseFeature | SequenceFeature, ids: torch.Tensor) -> torch.Tensor:
        """Raw embedding lookup for one feature: ``ids [...]`` -> ``[..., D]``."""
        table = self.tables[feature.table_name]
        if self.check_inputs:
            check_ids(feature.name, ids, table.num_embeddings)
        return table(ids.long())

    def embed_one(self, feature: object, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Embed one feature from the batch: sparse ``[B, D]``, pooled sequence ``[B, D]``,
        concat sequence ``[B, L, D]``, dense ``[B, d]``."""
        value = require(x, feature.name)
        if isinstance(feature, DenseFeature):
            value = value.float()
            return value.unsqueeze(-1) if value.dim() == 1 else value
        if isinstance(feature, SequenceFeature):
            if value.dim() != 2:
                raise ValueError(
                    f"sequence feature {feature.name!r} expects ids of shape [B, L], got {tuple(value.shape)}"
                )
            emb = self.lookup(feature, value)  # [B, L, D]
            if feature.pooling == "concat":
                return emb
            return masked_pool(emb, value != feature.pad_id, feature.pooling)
        if value.dim() == 2 and value.shape[1] == 1:
            value = value.squeeze(1)
        if value.dim() != 1:
            raise ValueError(f"sparse feature {feature.name!r} expects ids of shape [B], got {tuple(value.shape)}")
        return self.lookup(feature, value)

    def forward(
        self, x: Mapping[str, torch.Tensor], features: Sequence[object], squeeze_dim: bool = False
    ) -> torch.Tensor:
        if squeeze_dim:
            parts = [self.embed_one(f, x).flatten(1) for f in features]
            return torch.cat(parts, dim=1)  # [B, sum dims]
        id_features = [f for f in features if not isinstance(f, DenseFeature)]
        if len(id_features) != len(features):
            dense = [f.name for f in features if isinstance(f, DenseFeature)]
            raise ValueError(f"dense features {dense} cannot be stacked as fields; use squeeze_dim=True")
        if len(id_features) == 1 and getattr(id_features[0], "pooling", None) == "concat":
            return self.embed_one(id_features[0], x)  # [B, L, D]
        dims = {f.embed_dim for f in id_features}
        if len(dims) > 1:
            raise ValueError(
                "features stacked as fields [B, F, D] must share one embed_dim, got "
                + ", ".join(f"{f.name}={f.embed_dim}" for f in id_features)
            )
        return torch.stack([self.embed_one(f, x) for f in id_features], dim=1)  # [B, F, D]
