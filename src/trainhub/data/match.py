"""Data helpers for retrieval (matching) with Torch-RecHub's names and semantics.

Differences from Torch-RecHub, all deliberate: negatives never include the user's own
positives; sampling is seeded; ``method_id=3`` works for any number of draws; the input frame is
not modified; test rows of modes 1 and 2 get sampled negatives too (so they can be evaluated).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from trainhub.data.dataset import DictDataset, make_loader
from trainhub.data.utils import df_to_dict, pad_sequences

__all__ = ["negative_sample", "generate_seq_feature_match", "gen_model_input", "MatchDataGenerator",
           "inbatch_negative_sampling", "gather_inbatch_logits"]

log = logging.getLogger(__name__)


def _sampling_probs(items_cnt_order: Mapping[Any, int], method_id: int) -> np.ndarray | None:
    counts = np.asarray(list(items_cnt_order.values()), dtype=np.float64)
    if method_id == 0:
        return None  # uniform
    if method_id == 1:
        weights = counts ** 0.75  # word2vec's smoothed popularity
    elif method_id == 2:
        weights = np.log(counts + 1) + 1e-6
    elif method_id == 3:
        # Tencent RALM: by popularity rank k (0 = most popular), p ~ log((k+2)/(k+1)).
        ranks = np.arange(len(counts), dtype=np.float64)
        weights = (np.log(ranks + 2) - np.log(ranks + 1)) / np.log(len(counts) + 1)
    else:
        raise ValueError(f"method_id must be 0 (uniform), 1 (count^0.75), 2 (log count) or 3 (RALM), got {method_id!r}")
    return weights / weights.sum()


def negative_sample(items_cnt_order: Mapping[Any, int], ratio: int, method_id: int = 0,
                    seed: int | np.random.Generator | None = None) -> np.ndarray:
    """Draw ``ratio`` items (with replacement) from ``items_cnt_order``.

    Args:
        items_cnt_order: ``{item: count}``, most frequent first (method 3 uses this order as ranks).
        ratio: number of draws.
        method_id: 0 uniform, 1 ``count**0.75``, 2 ``log(count + 1)``, 3 Tencent RALM rank-based.
        seed: seed or numpy Generator.

    Returns:
        ``np.ndarray`` of ``ratio`` item ids.
    """
    if not items_cnt_order:
        raise ValueError("items_cnt_order is empty")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    items = np.asarray(list(items_cnt_order.keys()))
    return rng.choice(items, size=int(ratio), replace=True, p=_sampling_probs(items_cnt_order, method_id))


def _exclude_positives(neg: np.ndarray, owners: np.ndarray, positives: dict, items_cnt_order: Mapping[Any, int],
                       method_id: int, rng: np.random.Generator, max_rounds: int = 100) -> np.ndarray:
    """Redraw every negative that is one of its owner's positives."""
    for _ in range(max_rounds):
        clash = np.fromiter((n in positives[u] for u, n in zip(owners, neg)), dtype=bool, count=len(neg))
        if not clash.any():
            return neg
        neg[clash] = negative_sample(items_cnt_order, int(clash.sum()), method_id, rng)
    bad = owners[clash][0]
    raise ValueError(f"could not draw negatives outside the positives of user {bad!r}: "
                     f"{len(positives[bad])} of {len(items_cnt_order)} items are positives")


def generate_seq_feature_match(data, user_col: str, item_col: str, time_col: str,
                               item_attribute_cols: Sequence[str] | None = None, sample_method: int = 0,
                               mode: int = 0, neg_ratio: int = 0, min_item: int = 0, seed: int | None = 2022):
    """Per user, turn the time-ordered items into (history -> next item) samples.

    For every user with at least ``min_item`` items and each position ``i >= 1``: a sample
    ``[user, item_i, items[:i], i, (attribute histories...)]``. The last position goes to the test
    frame, the others to the training frame. Training negatives depend on ``mode``:

    * 0 point-wise: the positive row gets ``label = 1``, plus ``neg_ratio`` copies with a negative
      item and ``label = 0``;
    * 1 pair-wise: a ``neg_items`` column with one negative id (``neg_ratio`` is forced to 1);
    * 2 list-wise: a ``neg_items`` column with a list of ``neg_ratio`` ids (``neg_ratio > 0``).

    Negatives are drawn with :func:`negative_sample` and never include any item of the user.

    Returns:
        ``(df_train, df_test)`` with columns ``user_col, item_col, hist_<item>, histlen_<item>,
        hist_<attr>..., label | neg_items``; both shuffled with ``seed``.
    """
    import pandas as pd

    attrs = list(item_attribute_cols or [])
    missing = [c for c in [user_col, item_col, time_col, *attrs] if c not in data.columns]
    if missing:
        raise KeyError(f"columns {missing} are not in the data (it has {list(data.columns)[:20]})")
    if mode not in (0, 1, 2):
        raise ValueError(f"mode must be 0 (point-wise), 1 (pair-wise) or 2 (list-wise), got {mode!r}")
    if mode == 2 and neg_ratio <= 0:
        raise ValueError("neg_ratio must be > 0 for list-wise samples (mode=2)")
    if mode == 1:
        neg_ratio = 1
    rng = np.random.default_rng(seed)
    data = data.sort_values(time_col, kind="stable")
    items_cnt = Counter(data[item_col].tolist())
    items_cnt_order = OrderedDict(sorted(items_cnt.items(), key=lambda kv: kv[1], reverse=True))

    train, test, positives, n_cold = [], [], {}, 0
    for uid, hist in data.groupby(user_col, sort=True):
        pos_list = hist[item_col].tolist()
        if len(pos_list) < min_item:
            n_cold += 1
            continue
        positives[uid] = set(pos_list)
        attr_lists = [hist[c].tolist() for c in attrs]
        for i in range(1, len(pos_list)):
            sample = [uid, pos_list[i], pos_list[:i], i] + [a[:i] for a in attr_lists]
            (test if i == len(pos_list) - 1 else train).append(sample)

    columns = [user_col, item_col, f"hist_{item_col}", f"histlen_{item_col}"] + [f"hist_{c}" for c in attrs]

    def draw(rows: list, per_row: int) -> np.ndarray:
        owners = np.repeat(np.asarray([r[0] for r in rows], dtype=object), per_row)
        neg = negative_sample(items_cnt_order, len(owners), sample_method, rng)
        neg = _exclude_positives(neg, owners, positives, items_cnt_order, sample_method, rng)
        return neg.reshape(len(rows), per_row)

    df_train = pd.DataFrame(train, columns=columns)
    df_test = pd.DataFrame(test, columns=columns)
    if mode == 0:
        df_train["label"] = 1
        if neg_ratio > 0 and len(df_train):
            neg = draw(train, neg_ratio)
            copies = df_train.loc[df_train.index.repeat(neg_ratio)].copy()
            copies[item_col] = neg.reshape(-1)
            copies["label"] = 0
            df_train = pd.concat([df_train, copies], ignore_index=True)
        df_test["label"] = 1
    else:
        for frame, rows in ((df_train, train), (df_test, test)):
            if len(rows):
                neg = draw(rows, neg_ratio)
                frame["neg_items"] = list(neg[:, 0]) if mode == 1 else [list(r) for r in neg]
            else:
                frame["neg_items"] = []
    df_train = df_train.sample(frac=1.0, random_state=rng.integers(2**31)).reset_index(drop=True)
    df_test = df_test.sample(frac=1.0, random_state=rng.integers(2**31)).reset_index(drop=True)
    log.info("generated %d train and %d test samples; dropped %d users with fewer than %d items",
             len(df_train), len(df_test), n_cold, min_item)
    return df_train, df_test


def gen_model_input(df, user_profile, user_col: str, item_profile, item_col: str, seq_max_len: int,
                    padding: str = "pre", truncating: str = "pre") -> dict[str, np.ndarray]:
    """Merge user/item profiles into ``df`` (row order kept) and pad every ``hist_*``/``tag_*`` column
    to ``seq_max_len``; returns ``{column: array}`` (``neg_items`` lists become ``[N, K]``)."""
    import pandas as pd

    if user_profile is not None:
        df = pd.merge(df, user_profile, on=user_col, how="left")
    if item_profile is not None:
        df = pd.merge(df, item_profile, on=item_col, how="left")
    out = df_to_dict(df)
    for col in df.columns:
        if col.startswith("hist_") or col.startswith("tag_"):
            out[col] = pad_sequences(df[col].tolist(), maxlen=seq_max_len, padding=padding, truncating=truncating,
                                     value=0, dtype="int64")
        elif out[col].dtype == object and len(df) and isinstance(out[col][0], (list, tuple, np.ndarray)):
            out[col] = np.stack([np.asarray(v) for v in out[col]])
    return out


class MatchDataGenerator:
    """Training loader plus test-user and all-item loaders for embedding inference.

    Args:
        x: training columns ``{name: array}``.
        y: labels (point-wise) or ``None``/``[]`` for modes that need none (batches are then dicts).

    Example:
        >>> dg = MatchDataGenerator(x=x_train, y=y_train)
        >>> train_dl, test_dl, item_dl = dg.generate_dataloader(x_test_user, x_all_item, batch_size=256)
    """

    def __init__(self, x: Mapping[str, Any], y: Any = None):
        self.dataset = DictDataset(x, y)

    def generate_dataloader(self, x_test_user: Mapping[str, Any], x_all_item: Mapping[str, Any], batch_size: int,
                            num_workers: int = 0, seed: int = 2022):
        """``(train_loader [shuffled], test_user_loader, all_item_loader)``; the last two yield dicts."""
        train = make_loader(self.dataset, batch_size, shuffle=True, num_workers=num_workers, seed=seed)
        test = make_loader(DictDataset(x_test_user), batch_size, num_workers=num_workers)
        items = make_loader(DictDataset(x_all_item), batch_size, num_workers=num_workers)
        return train, test, items


def inbatch_negative_sampling(scores: torch.Tensor, neg_ratio: int | None = None, hard_negative: bool = False,
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """Column indices of in-batch negatives for every row of a ``[B, B]`` user-item score matrix.

    Torch-RecHub's function, vectorised: row ``i`` gets ``neg_ratio`` distinct columns other than
    ``i`` (its positive), uniformly at random, or the highest-scoring ones with ``hard_negative``.
    (:class:`trainhub.trainers.MatchTrainer` with ``in_batch_neg=True`` does this for you.)

    Args:
        scores: ``[B, B]``, ``scores[i, j]`` = user ``i`` against item ``j``.
        neg_ratio: negatives per row; ``None`` or a value outside ``[1, B-1]`` gives ``B-1``.
        hard_negative: take the top-scoring columns instead of random ones.
        generator: a ``torch.Generator`` (on the CPU) for reproducible draws.

    Returns:
        ``[B, neg_ratio]`` int64 column indices, on ``scores``' device.
    """
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"inbatch_negative_sampling expects a square [B, B] score matrix, got {tuple(scores.shape)}")
    batch = scores.shape[0]
    if batch <= 1:
        raise ValueError("in-batch negative sampling needs a batch of at least 2 rows")
    k = batch - 1 if neg_ratio is None or not 1 <= neg_ratio <= batch - 1 else int(neg_ratio)
    diagonal = torch.eye(batch, dtype=torch.bool, device=scores.device)
    if hard_negative:
        keys = scores.detach().masked_fill(diagonal, float("-inf"))
        return keys.topk(k, dim=1).indices
    # The k smallest of i.i.d. uniform keys form a uniform random k-subset of the other columns.
    keys = torch.rand(batch, batch, generator=generator).to(scores.device).masked_fill(diagonal, float("inf"))
    return keys.topk(k, dim=1, largest=False).indices


def gather_inbatch_logits(scores: torch.Tensor, neg_indices: torch.Tensor) -> torch.Tensor:
    """``[B, 1+K]`` logits: the positive ``scores[i, i]`` first, then ``scores[i, neg_indices[i]]``."""
    positive = scores.diagonal().unsqueeze(1)
    return torch.cat([positive, scores.gather(1, neg_indices)], dim=1)
