"""Behaviour-sequence samples for ranking models (DIN, DIEN, BST), as Torch-RecHub builds them.

``generate_seq_feature`` keeps Torch-RecHub's interface and output columns but not its defects:
users with more than ``max_len`` interactions keep every sample (the history is the most recent
``max_len`` items), so they also get validation and test rows; only id columns are encoded; the
input frame is not modified; sampling and shuffling are seeded.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pandas is imported where it is used: `import trainhub` stays light
    import pandas as pd

__all__ = ["generate_seq_feature"]

log = logging.getLogger(__name__)


def _encode(column: pd.Series, name: str) -> np.ndarray:
    """Sorted label encoding shifted by one, so 0 stays free for padding."""
    import pandas as pd

    codes, _ = pd.factorize(column, sort=True)
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0])
        raise ValueError(f"column {name!r} has a missing value at row {row}; fill or drop it first")
    return codes.astype(np.int64) + 1


def _sample_negatives(rng: np.random.Generator, clicked: set[int], size: int, num_items: int, user) -> np.ndarray:
    """``size`` ids drawn uniformly from ``1..num_items`` outside ``clicked``."""
    if len(clicked) >= num_items:
        raise ValueError(f"user {user!r} interacted with every item; no negative item can be sampled")
    out = rng.integers(1, num_items + 1, size)
    bad = np.fromiter((v in clicked for v in out), bool, size)
    while bad.any():  # rejection sampling; cheap while users click a small share of the items
        out[bad] = rng.integers(1, num_items + 1, int(bad.sum()))
        bad = np.fromiter((v in clicked for v in out), bool, size)
    return out


def _window(values: Sequence[int], end: int, max_len: int) -> list[int]:
    """The ``max_len`` values before position ``end``, post-padded with 0 to ``max_len``."""
    hist = list(values[max(0, end - max_len):end])
    return hist + [0] * (max_len - len(hist))


def generate_seq_feature(data: pd.DataFrame, user_col: str, item_col: str, time_col: str,
                         item_attribute_cols: Sequence[str] | None = None, min_item: int = 0, shuffle: bool = True,
                         max_len: int = 50, *, seed: int = 2022, neg_history: bool = False
                         ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Sliding-window samples with one sampled negative per positive; last items are val/test.

    Ids of ``user_col``, ``item_col`` and every attribute column are label-encoded in sorted
    order and shifted by one (0 is padding). Each user's interactions are sorted by ``time_col``;
    for every position ``i >= 1`` the item at ``i`` is a positive row (label 1) and a uniformly
    sampled item the user never interacted with is a negative row (label 0), both with the
    user's previous ``max_len`` items as history (post-padded with 0). Position ``n-1`` (the
    user's last item) goes to test, ``n-2`` to validation, the rest to train, so no test target
    is ever a training target.

    Args:
        data: interactions, one row each.
        user_col: user id column.
        item_col: item id column.
        time_col: timestamp column (only used for ordering; not encoded).
        item_attribute_cols: item attribute columns (e.g. category) to give histories and targets.
        min_item: drop users with fewer interactions.
        shuffle: shuffle the rows of each returned frame.
        max_len: history length.
        seed: seed of negative sampling and shuffling.
        neg_history: also return ``neg_hist_item_id`` (and ``neg_hist_<attr>``): a sampled
            non-clicked item at every history position, for DIEN's auxiliary loss.

    Returns:
        ``(train, val, test)`` frames with columns ``label, target_item_id, <user_col>,
        hist_item_id`` then ``hist_<attr>, target_<attr>`` per attribute (then the negative
        histories). History cells are lists of length ``max_len``.

    Example:
        >>> train, val, test = generate_seq_feature(df, "user_id", "item_id", "time",
        ...                                         item_attribute_cols=["cate_id"], max_len=50)
    """
    import pandas as pd

    attrs = list(item_attribute_cols or [])
    missing = [c for c in [user_col, item_col, time_col, *attrs] if c not in data.columns]
    if missing:
        raise KeyError(f"columns {missing} are missing; the data has {list(data.columns)}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    frame = pd.DataFrame({time_col: data[time_col].to_numpy()})
    for col in dict.fromkeys([user_col, item_col, *attrs]):
        frame[col] = _encode(data[col], col)
    num_items = int(frame[item_col].max())
    # Attribute of each item (its last occurrence), to look up the sampled negatives' attributes.
    item_attr = {a: np.zeros(num_items + 1, dtype=np.int64) for a in attrs}
    for a in attrs:
        item_attr[a][frame[item_col].to_numpy()] = frame[a].to_numpy()
    frame = frame.sort_values([user_col, time_col], kind="mergesort")

    rng = np.random.default_rng(seed)
    splits: dict[str, list[list]] = {"train": [], "val": [], "test": []}
    dropped = 0
    for uid, hist in frame.groupby(user_col, sort=True):
        items = hist[item_col].tolist()
        n = len(items)
        if n < min_item:
            dropped += 1
            continue
        if n < 2:
            continue
        negatives = _sample_negatives(rng, set(items), n, num_items, uid).tolist()
        attr_lists = {a: hist[a].tolist() for a in attrs}
        for i in range(1, n):
            split = "test" if i == n - 1 else "val" if i == n - 2 else "train"
            shared = [uid, _window(items, i, max_len)]
            tail_pos, tail_neg = [], []
            for a in attrs:
                window = _window(attr_lists[a], i, max_len)
                tail_pos += [window, attr_lists[a][i]]
                tail_neg += [window, int(item_attr[a][negatives[i]])]
            extra = []
            if neg_history:
                extra.append(_window(negatives, i, max_len))
                extra += [_window([int(item_attr[a][v]) for v in negatives], i, max_len) for a in attrs]
            splits[split].append([1, items[i], *shared, *tail_pos, *extra])
            splits[split].append([0, negatives[i], *shared, *tail_neg, *extra])
    if dropped:
        log.info("dropped %d users with fewer than %d interactions", dropped, min_item)

    columns = ["label", "target_item_id", user_col, "hist_item_id"]
    for a in attrs:
        columns += [f"hist_{a}", f"target_{a}"]
    if neg_history:
        columns += ["neg_hist_item_id"] + [f"neg_hist_{a}" for a in attrs]
    out = []
    for name in ("train", "val", "test"):
        df = pd.DataFrame(splits[name], columns=columns)
        if shuffle and len(df):
            df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
        out.append(df)
    return out[0], out[1], out[2]
