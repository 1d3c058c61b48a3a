"""A tiny synthetic input used by model examples and the sweep test.

Keeping it in the package lets each model's registration say how to build it on toy data.
"""

from __future__ import annotations

import torch

from trainhub.features import DenseFeature, SequenceFeature, SparseFeature

BATCH_SIZE = 8
SEQ_LEN = 5
EMBED_DIM = 8
VOCAB = {"user_id": 20, "item_id": 30, "cate_id": 6, "city": 7}


def sparse_features(embed_dim: int = EMBED_DIM) -> list[SparseFeature]:
    return [SparseFeature(name, size, embed_dim=embed_dim) for name, size in VOCAB.items()]


def dense_features() -> list[DenseFeature]:
    return [DenseFeature("age"), DenseFeature("price")]


def history_features(embed_dim: int = EMBED_DIM, pooling: str = "mean") -> list[SequenceFeature]:
    return [
        SequenceFeature("hist_item_id", VOCAB["item_id"], embed_dim, pooling=pooling, shared_with="item_id"),
        SequenceFeature("hist_cate_id", VOCAB["cate_id"], embed_dim, pooling=pooling, shared_with="cate_id"),
    ]


def target_features(embed_dim: int = EMBED_DIM) -> list[SparseFeature]:
    """The candidate item's id and category: the tables the history features share."""
    return [SparseFeature(name, VOCAB[name], embed_dim) for name in ("item_id", "cate_id")]


def neg_history_features(embed_dim: int = EMBED_DIM) -> list[SequenceFeature]:
    """Sampled non-clicked items aligned with the history (DIEN's auxiliary loss)."""
    return [
        SequenceFeature("neg_hist_item_id", VOCAB["item_id"], embed_dim, pooling="concat", shared_with="item_id"),
        SequenceFeature("neg_hist_cate_id", VOCAB["cate_id"], embed_dim, pooling="concat", shared_with="cate_id"),
    ]


def batch(batch_size: int = BATCH_SIZE, seed: int = 0) -> dict[str, torch.Tensor]:
    """Ids for every toy feature (sequences padded with 0 at the end), floats for dense ones."""
    g = torch.Generator().manual_seed(seed)
    x = {name: torch.randint(1, size, (batch_size,), generator=g) for name, size in VOCAB.items()}
    x["age"] = torch.rand(batch_size, generator=g)
    x["price"] = torch.rand(batch_size, generator=g)
    lengths = torch.randint(1, SEQ_LEN + 1, (batch_size,), generator=g)
    keep = torch.arange(SEQ_LEN) < lengths.unsqueeze(1)  # [B, L]
    x["hist_item_id"] = torch.randint(1, VOCAB["item_id"], (batch_size, SEQ_LEN), generator=g) * keep
    x["hist_cate_id"] = torch.randint(1, VOCAB["cate_id"], (batch_size, SEQ_LEN), generator=g) * keep
    x["neg_hist_item_id"] = torch.randint(1, VOCAB["item_id"], (batch_size, SEQ_LEN), generator=g) * keep
    x["neg_hist_cate_id"] = torch.randint(1, VOCAB["cate_id"], (batch_size, SEQ_LEN), generator=g) * keep
    return x


def labels(batch_size: int = BATCH_SIZE, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    y = torch.randint(0, 2, (batch_size,), generator=g).float()
    y[0], y[1] = 0.0, 1.0  # both classes present, so AUC is defined
    return y

