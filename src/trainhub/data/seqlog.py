"""Next-item sequences from an interaction log: the data side of generative recommendation.

An interaction log is a table with one row per (user, item, timestamp) event: a pandas DataFrame,
or a CSV or Parquet file. :func:`interaction_sequences` turns it into per-user chronological item
sequences and splits them into training, validation and test samples that
:class:`trainhub.trainers.SeqTrainer` (and Torch-RecHub's ``SeqTrainer``) read as
``(seq_tokens, seq_positions, seq_time_diffs, targets)`` batches:

* items are encoded as tokens ``1..N`` in sorted raw-id order (``0`` is PAD), like Torch-RecHub's
  ``preprocess_ml_hstu.py``; :class:`ItemVocab` maps both ways;
* each sample is a left-padded history of the most recent ``max_seq_len`` items before its target,
  with ``seq_time_diffs`` the seconds from each item to the history's last item (the anchor of
  Meta's reference; the relative time bias only uses differences of these), and ``targets`` the
  next item (``[B]``);
* **leave-one-out** (default, the SASRec/HSTU protocol): per user, the last item is the test
  target, the second-last the validation target, the rest trains; **time split**: one global
  validation start and test start; train on what happened before the validation start, and
  predict each user's first item in the validation (test) period from everything before it;
* two training layouts: ``layout="user"`` (default) gives one sample per user, the whole
  training history, and the trainer puts a loss at every position, so every transition is
  trained once per epoch; ``layout="sliding"`` gives one sample per training position
  (upstream's layout, for ported scripts: the same transitions, each history prefix again).
  In both, the time differences of a sample are taken to its last history item, so at positions
  before the last an input-side time embedding (HSTU's ``use_time_embedding``) sees how long
  before that item they were, as in upstream's samples; the relative time bias is unaffected.

Example:
    >>> data = interaction_sequences("ratings.csv", user_col="user_id", item_col="item_id",
    ...                              time_col="timestamp", max_seq_len=50)
    >>> train_dl, val_dl, test_dl = data.dataloaders(batch_size=128)
    >>> model = HSTUModel(vocab_size=data.vocab_size, max_seq_len=50)
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from trainhub.data.dataset import make_loader
from trainhub.data.interactions import PAD, ItemVocab, encode_histories, read_interactions

__all__ = ["UserSequences", "NextItemSamples", "SequenceSplits", "interaction_sequences"]

log = logging.getLogger(__name__)

_SPLITS = ("leave_one_out", "time")
_LAYOUTS = ("user", "sliding")


# -- per-user sequences -------------------------------------------------------------------------------
@dataclass
class UserSequences:
    """Every user's items in time order, encoded, in one flat array (CSR layout).

    User ``u``'s tokens are ``items[offsets[u]:offsets[u + 1]]`` and their timestamps (seconds)
    ``times[...]`` at the same places. Users are sorted by raw id; interactions of one user with
    equal timestamps keep their order in the log (a stable sort).
    """

    vocab: ItemVocab
    users: np.ndarray  # [U] raw user ids
    offsets: np.ndarray  # [U + 1]
    items: np.ndarray  # [M] tokens
    times: np.ndarray  # [M] int64 seconds

    @classmethod
    def from_log(cls, log_or_path: Any, user_col: str = "user_id", item_col: str = "item_id",
                 time_col: str = "timestamp", *, min_interactions: int = 1, time_unit: str = "s",
                 read_kwargs: dict | None = None) -> "UserSequences":
        """Read and encode a log (see :func:`read_interactions`). Users with fewer than
        ``min_interactions`` events are dropped (the count is logged); the item vocabulary is built
        from the events that remain."""
        import pandas as pd

        frame = read_interactions(log_or_path, user_col, item_col, time_col, time_unit=time_unit,
                                  read_kwargs=read_kwargs)
        if len(frame) == 0:
            raise ValueError(f"the interaction log {_name(log_or_path)} has no rows")
        try:
            user_codes, users = pd.factorize(frame["user"], sort=True)
        except TypeError:  # ids that do not compare (mixed types): order of appearance
            user_codes, users = pd.factorize(frame["user"], sort=False)
        counts = np.bincount(user_codes, minlength=len(users))
        keep_user = counts >= min_interactions
        dropped = int((~keep_user).sum())
        if dropped:
            log.info("dropped %d of %d users with fewer than %d interactions (%d interactions)", dropped,
                     len(users), min_interactions, int(counts[~keep_user].sum()))
        if not keep_user.any():
            raise ValueError(f"no user of {_name(log_or_path)} has {min_interactions} or more interactions "
                             f"(the most any user has is {int(counts.max())})")
        rows = keep_user[user_codes]
        remap = np.cumsum(keep_user) - 1  # old user code -> new one
        codes, times = remap[user_codes[rows]], frame["time"].to_numpy()[rows]
        raw_items = frame["item"].to_numpy()[rows]
        order = np.lexsort((times, codes))  # by user, then time; stable: ties keep log order
        vocab = ItemVocab.from_values(raw_items)
        items = vocab.encode(raw_items[order])
        per_user = np.bincount(codes, minlength=int(keep_user.sum()))
        offsets = np.concatenate([[0], np.cumsum(per_user)]).astype(np.int64)
        return cls(vocab, np.asarray(users)[keep_user], offsets, items, times[order].astype(np.int64))

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return self.num_users

    def sequence(self, user_index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens, seconds)`` of one user, oldest first."""
        start, end = self.offsets[user_index], self.offsets[user_index + 1]
        return self.items[start:end], self.times[start:end]

    def leave_one_out(self, max_seq_len: int = 200, layout: str = "user", *, min_interactions: int = 3,
                      window_stride: int | None = None) -> "SequenceSplits":
        """Per user: last item -> test target, second-last -> validation target, the rest trains.

        Args:
            max_seq_len: history length of every sample (the most recent items are kept).
            layout: ``"user"`` (one training sample per user, loss at every position) or
                ``"sliding"`` (one per training position, Torch-RecHub's layout).
            min_interactions: users with fewer events are dropped (count logged); 3 is the least
                the split needs (one history item, a validation and a test target).
            window_stride: ``layout="user"`` only: also train on earlier windows of a history
                longer than ``max_seq_len``, ending every ``window_stride`` items back (``max_seq_len``
                tiles the history). None keeps only the most recent window (SASRec, HSTU).
        """
        _check_layout(layout, max_seq_len, window_stride)
        starts, lengths = self.offsets[:-1], self.lengths
        keep = lengths >= max(min_interactions, 3)
        _log_dropped(int((~keep).sum()), self.num_users, max(min_interactions, 3), "leave-one-out")
        starts, lengths = starts[keep], lengths[keep]
        # The training part of a user is items[:n - 2]; a sample's target is at index `end`.
        train_ends = _train_ends(starts, lengths - 2, layout, window_stride, max_seq_len)
        val = _Samples(starts, starts + lengths - 2)
        test = _Samples(starts, starts + lengths - 1)
        return self._splits(train_ends, val, test, max_seq_len, layout, "leave_one_out")

    def time_split(self, val_start: Any, test_start: Any, max_seq_len: int = 200, layout: str = "user", *,
                   window_stride: int | None = None) -> "SequenceSplits":
        """One global cut: training targets happened before ``val_start``; each user's first item
        in ``[val_start, test_start)`` is a validation target and first item from ``test_start`` on
        a test target, predicted from everything the user did before it.

        ``val_start`` / ``test_start``: seconds since the epoch, a date (string or datetime), or a
        fraction in ``(0, 1)``: that quantile of all timestamps.
        """
        _check_layout(layout, max_seq_len, window_stride)
        val_t, test_t = self._cut(val_start, "val_start"), self._cut(test_start, "test_start")
        if val_t > test_t:
            raise ValueError(f"val_start ({val_t}) is after test_start ({test_t})")
        starts = self.offsets[:-1]
        # Index of each user's first event at or after a cut (times are sorted within a user).
        first_val = _first_at_or_after(self.times, self.offsets, val_t)
        first_test = _first_at_or_after(self.times, self.offsets, test_t)
        train_ends = _train_ends(starts, first_val - starts, layout, window_stride, max_seq_len)
        has_val = (first_val < first_test) & (first_val > starts)
        has_test = (first_test < self.offsets[1:]) & (first_test > starts)
        val = _Samples(starts[has_val], first_val[has_val])
        test = _Samples(starts[has_test], first_test[has_test])
        log.info("time split at %d / %d: %d users with a validation target, %d with a test target", val_t,
                 test_t, len(val), len(test))
        return self._splits(train_ends, val, test, max_seq_len, layout, "time")

    def _cut(self, value: Any, name: str) -> int:
        import pandas as pd

        if isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < value < 1:
            return int(np.quantile(self.times, float(value), method="lower")) + 1  # the quantile's events train
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return int(value)
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{name} must be seconds, a date or a fraction in (0, 1), got {value!r}") from err
        if stamp.tz is None:
            stamp = stamp.tz_localize("UTC")
        return int((stamp - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1))

    def _splits(self, train: "_Samples", val: "_Samples", test: "_Samples", max_seq_len: int, layout: str,
                split: str) -> "SequenceSplits":
        def samples(s: _Samples) -> NextItemSamples:
            return NextItemSamples(self.items, self.times, s.starts, s.ends, max_seq_len)

        result = SequenceSplits(samples(train), samples(val), samples(test), self, max_seq_len, layout, split)
        log.info("%s split, layout %r: %d train, %d validation, %d test samples; %d items", split, layout,
                 len(result.train), len(result.val), len(result.test), self.vocab.num_items)
        return result

    def encode_histories(self, histories: Sequence[Sequence[Any]], max_seq_len: int,
                         times: Sequence[Sequence[Any]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``(seq_tokens [N, L], seq_time_diffs [N, L])`` of raw-id histories (oldest
        first) for ``predict``; see :func:`encode_histories`."""
        return encode_histories(self.vocab, histories, max_seq_len, times)


def _name(log_or_path: Any) -> str:
    return "DataFrame" if hasattr(log_or_path, "columns") else str(log_or_path)


def _check_layout(layout: str, max_seq_len: int, window_stride: int | None) -> None:
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    if not isinstance(max_seq_len, int) or max_seq_len < 1:
        raise ValueError(f"max_seq_len must be a positive integer, got {max_seq_len!r}")
    if window_stride is not None and (layout != "user" or window_stride < 1):
        raise ValueError("window_stride must be a positive integer, and only with layout='user'")


def _log_dropped(dropped: int, total: int, needed: int, split: str) -> None:
    if dropped:
        log.info("%s: dropped %d of %d users with fewer than %d interactions", split, dropped, total, needed)


def _first_at_or_after(times: np.ndarray, offsets: np.ndarray, cut: int) -> np.ndarray:
    """Per user, the flat index of the first event at or after ``cut`` (``offsets[u + 1]`` if none)."""
    before = np.add.reduceat((times < cut).astype(np.int64), offsets[:-1]) if len(times) else np.zeros(0, np.int64)
    before[np.diff(offsets) == 0] = 0
    return offsets[:-1] + before


@dataclass
class _Samples:
    starts: np.ndarray  # flat index of the user's first event
    ends: np.ndarray  # flat index of the target

    def __len__(self) -> int:
        return len(self.ends)


def _train_ends(starts: np.ndarray, num_train: np.ndarray, layout: str, stride: int | None, max_seq_len: int
                ) -> _Samples:
    """Training samples of users whose first ``num_train`` events train: targets at indices
    ``1..num_train - 1`` of each user (sliding), or the last one (and earlier windows with a stride)."""
    num_train = np.asarray(num_train, dtype=np.int64)
    users = num_train >= 2  # a sample needs one history item and a target
    starts, num_train = starts[users], num_train[users]
    if layout == "sliding":
        per_user = num_train - 1
        user_of = np.repeat(np.arange(len(starts)), per_user)
        within = np.arange(per_user.sum()) - np.repeat(np.cumsum(per_user) - per_user, per_user) + 1
        return _Samples(starts[user_of], starts[user_of] + within)
    last = num_train - 1  # relative index of the last training target
    if stride is None:
        return _Samples(starts, starts + last)
    per_user = (last - 1) // stride + 1  # targets last, last - stride, ... >= 1
    user_of = np.repeat(np.arange(len(starts)), per_user)
    back = (np.arange(per_user.sum()) - np.repeat(np.cumsum(per_user) - per_user, per_user)) * stride
    return _Samples(starts[user_of], starts[user_of] + last[user_of] - back)


# -- samples as a dataset ------------------------------------------------------------------------------
class NextItemSamples(Dataset):
    """Samples ``(seq_tokens [L], seq_positions [L], seq_time_diffs [L], target)`` (int64), built
    on the fly from the users' flat sequences: sample ``i`` is the (at most ``max_seq_len``) items
    before index ``ends[i]`` and not before ``starts[i]``, left-padded with PAD, and the item at
    ``ends[i]`` as its target. Positions are ``0..L-1`` and time differences are seconds before
    the history's last item (0 on padding), as in Torch-RecHub's ``preprocess_ml_hstu.py``.

    Works with any DataLoader; :meth:`SequenceSplits.dataloaders` builds whole batches at once.
    """

    def __init__(self, items: np.ndarray, times: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 max_seq_len: int):
        self.items = torch.as_tensor(items, dtype=torch.long)
        self.times = torch.as_tensor(times, dtype=torch.long)
        self.starts = torch.as_tensor(starts, dtype=torch.long)
        self.ends = torch.as_tensor(ends, dtype=torch.long)
        self.max_seq_len = max_seq_len

    def __len__(self) -> int:
        return len(self.ends)

    def batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Samples ``indices`` as one batch of ``[B, L]``, ``[B, L]``, ``[B, L]``, ``[B]`` tensors."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        starts, ends = self.starts[idx], self.ends[idx]
        length = self.max_seq_len
        # Position j of a row holds the item at ends - L + j, when that is not before the user's start.
        source = ends.unsqueeze(1) - length + torch.arange(length)  # [B, L]
        valid = source >= starts.unsqueeze(1)
        source = torch.where(valid, source, ends.unsqueeze(1) - 1)  # any in-range index; masked below
        tokens = self.items[source].masked_fill(~valid, PAD)
        anchor = self.times[ends - 1].unsqueeze(1)  # the history's last event
        diffs = (anchor - self.times[source]).masked_fill(~valid, 0)
        positions = torch.arange(length).expand(len(idx), length).clone()
        return tokens, positions, diffs, self.items[ends]

    def __getitem__(self, index: int):
        tokens, positions, diffs, target = self.batch([index])
        return tokens[0], positions[0], diffs[0], target[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """Every sample as numpy arrays, Torch-RecHub's ``train_data.pkl`` layout: ``seq_tokens``,
        ``seq_positions``, ``targets`` (int32) and ``seq_time_diffs`` (int64)."""
        tokens, positions, diffs, targets = self.batch(torch.arange(len(self)))
        return {"seq_tokens": tokens.numpy().astype(np.int32), "seq_positions": positions.numpy().astype(np.int32),
                "seq_time_diffs": diffs.numpy(), "targets": targets.numpy().astype(np.int32)}


class _Batched(Dataset):
    """A view of :class:`NextItemSamples` whose ``__getitems__`` returns the whole batch (used
    with ``passthrough_collate``)."""

    def __init__(self, samples: NextItemSamples):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        return self.samples[index]

    def __getitems__(self, indices: Sequence[int]):
        return self.samples.batch(indices)


@dataclass
class SequenceSplits:
    """Training, validation and test samples of one split, with the vocabulary they use.

    Attributes:
        train / val / test: :class:`NextItemSamples`.
        sequences: the :class:`UserSequences` they were cut from.
        max_seq_len / layout / split: how.
    """

    train: NextItemSamples
    val: NextItemSamples
    test: NextItemSamples
    sequences: UserSequences
    max_seq_len: int
    layout: str
    split: str

    @property
    def vocab(self) -> ItemVocab:
        return self.sequences.vocab

    @property
    def vocab_size(self) -> int:
        """Items + 1 (PAD): a model's ``vocab_size``."""
        return self.sequences.vocab.vocab_size

    def dataloaders(self, batch_size: int = 128, eval_batch_size: int | None = None, *, shuffle: bool = True,
                    seed: int | None = None, num_workers: int = 0) -> tuple[Any, Any, Any]:
        """``(train, val, test)`` DataLoaders; each batch is built in one step. The training loader
        shuffles with an order per ``(seed, epoch)``, so a resumed run replays it."""
        eval_batch_size = eval_batch_size or batch_size
        train = make_loader(_Batched(self.train), batch_size, shuffle=shuffle, num_workers=num_workers, seed=seed)
        val = make_loader(_Batched(self.val), eval_batch_size, num_workers=num_workers)
        test = make_loader(_Batched(self.test), eval_batch_size, num_workers=num_workers)
        return train, val, test

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        """``"train"``, ``"val"`` or ``"test"`` samples as numpy arrays (Torch-RecHub's pickle layout)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return getattr(self, split).arrays()

    def encode_histories(self, histories: Sequence[Sequence[Any]], times: Sequence[Sequence[Any]] | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw-id histories -> left-padded ``(seq_tokens, seq_time_diffs)`` (unknown items dropped)."""
        return encode_histories(self.vocab, histories, self.max_seq_len, times)


def interaction_sequences(log_or_path: Any, user_col: str = "user_id", item_col: str = "item_id",
                          time_col: str = "timestamp", *, split: str = "leave_one_out", max_seq_len: int = 200,
                          layout: str = "user", min_interactions: int | None = None, val_start: Any = None,
                          test_start: Any = None, window_stride: int | None = None, time_unit: str = "s",
                          read_kwargs: dict | None = None) -> SequenceSplits:
    """An interaction log -> next-item training, validation and test samples.

    Args:
        log_or_path: a DataFrame or a CSV / Parquet path (see :func:`read_interactions`).
        user_col / item_col / time_col: column names.
        split: ``"leave_one_out"`` (last item test, second-last validation) or ``"time"`` (give
            ``val_start`` and ``test_start``: seconds, dates, or quantiles in ``(0, 1)``).
        max_seq_len: history length; longer histories keep their most recent items.
        layout: ``"user"`` (one training sample per user; the default) or ``"sliding"`` (one per
            training position, Torch-RecHub's layout).
        min_interactions: users with fewer events are dropped before the item vocabulary is
            built (default: 3 for leave-one-out, 2 for the time split); the count is logged.
        window_stride: see :meth:`UserSequences.leave_one_out`.
        time_unit: unit of numeric timestamps.
        read_kwargs: ``pandas.read_csv`` options for a CSV path.

    Example:
        >>> data = interaction_sequences(ratings_df, max_seq_len=50)
        >>> train_dl, val_dl, test_dl = data.dataloaders(batch_size=128)
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    needed = (3 if split == "leave_one_out" else 2) if min_interactions is None else min_interactions
    sequences = UserSequences.from_log(log_or_path, user_col, item_col, time_col, min_interactions=needed,
                                       time_unit=time_unit, read_kwargs=read_kwargs)
    if split == "leave_one_out":
        return sequences.leave_one_out(max_seq_len, layout, min_interactions=needed, window_stride=window_stride)
    if val_start is None or test_start is None:
        raise ValueError("split='time' needs val_start and test_start (seconds, dates or quantiles in (0, 1))")
    return sequences.time_split(val_start, test_start, max_seq_len, layout, window_stride=window_stride)
