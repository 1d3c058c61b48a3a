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


# -- matching examples: negatives and sampling weights on top of :func:`batch` ----------------
NUM_NEGATIVES = 3


def neg_items_feature(embed_dim: int = EMBED_DIM, name: str = "neg_items") -> SequenceFeature:
    """``[B, NUM_NEGATIVES]`` negative item ids sharing the ``item_id`` table."""
    return SequenceFeature(name, VOCAB["item_id"], embed_dim, pooling="concat", shared_with="item_id")


def match_batch(batch_size: int = BATCH_SIZE, seed: int = 0) -> dict[str, torch.Tensor]:
    """:func:`batch` plus ``neg_items [B, K]``, ``neg_item_id [B]``, ``neg_cate_id [B]`` and an
    item sampling probability ``item_prob [B]`` (for YoutubeSBC)."""
    x = batch(batch_size, seed)
    g = torch.Generator().manual_seed(seed + 2)
    x["neg_items"] = torch.randint(1, VOCAB["item_id"], (batch_size, NUM_NEGATIVES), generator=g)
    x["neg_item_id"] = torch.randint(1, VOCAB["item_id"], (batch_size,), generator=g)
    x["neg_cate_id"] = torch.randint(1, VOCAB["cate_id"], (batch_size,), generator=g)
    x["item_prob"] = torch.rand(batch_size, generator=g) * 0.5 + 0.01
    return x


def match_dataset(num_rows: int = 256, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A learnable retrieval toy: user ``u`` likes the items ``i`` with ``i % 3 == u % 3``.

    Returns ``(x, labels)``: the keys of :func:`match_batch` where ``item_id`` (with its ``cate_id
    = item % 6``), the history and ``neg_item_id``/``neg_items`` follow that rule (negatives come
    from other groups), and labels ``[N]``: 1 for even rows (a liked item), 0 for odd rows (the
    row's ``item_id`` is then a disliked one), for point-wise training.
    """
    g = torch.Generator().manual_seed(seed)
    num_items = VOCAB["item_id"]

    def pick(group: torch.Tensor, like: bool, *shape: int) -> torch.Tensor:
        """Item ids (>= 1) in the group (like) or outside it (not like)."""
        offset = torch.randint(0, 3, (len(group), *shape), generator=g) if not like else None
        base = torch.randint(0, num_items // 3, (len(group), *shape), generator=g) * 3
        target = group.view(-1, *([1] * len(shape))) if shape else group
        if not like:
            target = (target + 1 + offset % 2) % 3
        ids = base + target
        return torch.where(ids == 0, torch.full_like(ids, 3), ids).clamp_max(num_items - 1)

    x = match_batch(num_rows, seed)
    group = x["user_id"] % 3
    labels = (torch.arange(num_rows) % 2 == 0).float()
    liked, disliked = pick(group, True), pick(group, False)
    x["item_id"] = torch.where(labels.bool(), liked, disliked)
    x["cate_id"] = x["item_id"] % VOCAB["cate_id"]
    keep = x["hist_item_id"] != 0
    x["hist_item_id"] = pick(group, True, SEQ_LEN) * keep
    x["hist_cate_id"] = (x["hist_item_id"] % VOCAB["cate_id"]) * keep
    x["neg_item_id"] = pick(group, False)
    x["neg_cate_id"] = x["neg_item_id"] % VOCAB["cate_id"]
    x["neg_items"] = pick(group, False, NUM_NEGATIVES)
    return x, labels
