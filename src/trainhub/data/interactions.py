"""Interaction logs: reading and checking them, and the item vocabulary of next-item models.

An interaction log is a table with one row per (user, item, timestamp) event: a pandas DataFrame,
or a CSV or Parquet file. :func:`read_interactions` checks it (each missing column, missing value
or unparsable timestamp is an error naming the file, the column and the row) and converts the
timestamps to seconds; :class:`ItemVocab` encodes raw item ids as tokens ``1..N`` (``0`` is PAD),
and :func:`encode_histories` turns raw-id histories into model input for prediction.

:func:`trainhub.data.interaction_sequences` (in :mod:`trainhub.data.seqlog`) builds the training,
validation and test samples from a log.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch

if TYPE_CHECKING:  # pandas is imported where it is used: `import trainhub` stays light
    import pandas as pd

__all__ = ["ItemVocab", "read_interactions", "encode_histories", "PAD"]

log = logging.getLogger(__name__)

PAD = 0  # the padding token; never an item and never a target

_PARQUET_SUFFIXES = (".parquet", ".pq")
_TIME_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


# -- reading and checking a log ----------------------------------------------------------------------
def read_interactions(log_or_path: Any, user_col: str = "user_id", item_col: str = "item_id",
                      time_col: str = "timestamp", *, time_unit: str = "s",
                      read_kwargs: dict | None = None) -> "pd.DataFrame":
    """A checked log with columns ``user``, ``item`` and ``time`` (int64 seconds), in input order.

    Args:
        log_or_path: a DataFrame, or a CSV / Parquet (``.parquet``, ``.pq``) path; other suffixes
            are read as CSV (``read_kwargs`` go to ``pandas.read_csv``, e.g. ``sep="\\t"``,
            ``names=[...]`` for MovieLens' ``u.data``).
        user_col / item_col / time_col: the column names.
        time_unit: unit of numeric timestamps (``"s"``, ``"ms"``, ``"us"``, ``"ns"``); date strings
            and datetime columns are converted to seconds since the epoch.

    Raises:
        ValueError: a column is missing (the message lists the columns there are), or a user, item
            or timestamp is missing or a timestamp cannot be parsed (the message names the file,
            the column, the row and the value).
    """
    import pandas as pd

    if time_unit not in _TIME_UNITS:
        raise ValueError(f"time_unit must be one of {sorted(_TIME_UNITS)}, got {time_unit!r}")
    columns = {"user": user_col, "item": item_col, "timestamp": time_col}
    if isinstance(log_or_path, pd.DataFrame):
        source, frame = "the interaction DataFrame", log_or_path
        _check_columns(list(frame.columns), columns, source)
        frame = frame[[user_col, item_col, time_col]]
    else:
        path = Path(log_or_path)
        source = str(path)
        if not path.exists():
            raise FileNotFoundError(f"interaction log {path} does not exist")
        if path.suffix.lower() in _PARQUET_SUFFIXES:
            from trainhub.data.files import import_pyarrow

            pq = import_pyarrow().parquet
            _check_columns(pq.read_schema(path).names, columns, source)
            frame = pd.read_parquet(path, columns=[user_col, item_col, time_col])  # only the three columns
        else:
            kwargs = dict(read_kwargs or {})
            header = pd.read_csv(path, nrows=0, **kwargs)
            _check_columns(list(header.columns), columns, source)
            frame = pd.read_csv(path, usecols=[user_col, item_col, time_col], **kwargs)
    for role in ("user", "item"):
        _check_present(frame[columns[role]], columns[role], source)
    seconds = _to_seconds(frame[time_col], time_col, source, time_unit)
    return pd.DataFrame({"user": frame[user_col].to_numpy(), "item": frame[item_col].to_numpy(), "time": seconds})


def _check_columns(present: Sequence[str], wanted: dict[str, str], source: str) -> None:
    missing = [f"{role} column {name!r}" for role, name in wanted.items() if name not in present]
    if missing:
        raise ValueError(f"{source} has no {', no '.join(missing)}; its columns are {list(present)}. "
                         "Name them with user_col=, item_col=, time_col=")


def _row_label(series: "pd.Series", position: int, source: str) -> str:
    label = series.index[position]
    where = f"row {label}"
    if source.lower().endswith((".csv", ".tsv", ".txt", ".dat", ".data")) and label == position:
        where += f" (data line {position + 1})"
    return where


def _check_present(series: "pd.Series", name: str, source: str) -> None:
    missing = series.isna().to_numpy()
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise ValueError(f"{source}: column {name!r} is missing at {_row_label(series, first, source)} "
                         f"({int(missing.sum())} missing value(s) in all); drop or fill those rows first")


def _to_seconds(series: "pd.Series", name: str, source: str, unit: str) -> np.ndarray:
    """int64 seconds since the epoch, or an error naming the first missing / unparsable value."""
    import pandas as pd

    _check_present(series, name, source)
    if pd.api.types.is_bool_dtype(series):
        raise ValueError(f"{source}: column {name!r} holds booleans, not timestamps")
    if pd.api.types.is_numeric_dtype(series):
        return _numeric_seconds(series.to_numpy(), unit)
    if pd.api.types.is_datetime64_any_dtype(series):
        return _datetime_seconds(series)
    numbers_ = pd.to_numeric(series, errors="coerce")
    not_numbers = numbers_.isna().to_numpy()
    if not not_numbers.any():
        return _numeric_seconds(numbers_.to_numpy(), unit)
    if not not_numbers.all():  # mostly numbers: the others are what cannot be parsed
        bad, dates = not_numbers, None
    else:
        dates = pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
        bad = dates.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{source}: column {name!r} has an unparsable timestamp {series.iloc[first]!r} at "
                         f"{_row_label(series, first, source)} ({int(bad.sum())} such value(s)); give seconds "
                         "since the epoch or dates like '2024-01-31 12:00:00'")
    return _datetime_seconds(dates)


def _numeric_seconds(values: np.ndarray, unit: str) -> np.ndarray:
    divisor = _TIME_UNITS[unit]
    if values.dtype.kind == "f":
        return np.floor(values / divisor).astype(np.int64)
    return values.astype(np.int64) // divisor


def _datetime_seconds(series: "pd.Series") -> np.ndarray:
    import pandas as pd

    if getattr(series.dt, "tz", None) is None:
        series = series.dt.tz_localize("UTC")
    delta = series - pd.Timestamp(0, tz="UTC")
    return (delta // pd.Timedelta(seconds=1)).to_numpy().astype(np.int64)


# -- items --------------------------------------------------------------------------------------
class ItemVocab:
    """Raw item ids <-> tokens: the ``i``-th raw id (sorted, as Torch-RecHub's preprocessing
    sorts them) is token ``i + 1``; token ``0`` is PAD. ``vocab_size = num_items + 1`` is what a
    model's ``vocab_size`` must be.

    Args:
        items: the raw item ids, unique, in token order.
    """

    def __init__(self, items: Iterable[Any]):
        import pandas as pd

        self.index = pd.Index(list(items) if not isinstance(items, (np.ndarray, pd.Index)) else items)
        if not self.index.is_unique:
            raise ValueError("ItemVocab items must be unique")

    @classmethod
    def from_values(cls, values: Any) -> "ItemVocab":
        """Every distinct raw id among ``values``, sorted (by string when the ids do not compare)."""
        import pandas as pd

        unique = pd.unique(pd.Series(values))
        try:
            ordered = np.sort(unique)
        except TypeError:
            ordered = np.array(sorted(unique, key=str), dtype=object)
        return cls(ordered)

    @property
    def num_items(self) -> int:
        return len(self.index)

    @property
    def vocab_size(self) -> int:
        return len(self.index) + 1

    def encode(self, values: Any, unknown: str = "pad") -> np.ndarray:
        """Tokens ``[N]`` (int64) of raw ids; an id outside the vocabulary becomes PAD (``"pad"``) or
        raises (``"raise"``)."""
        import pandas as pd

        if unknown not in ("pad", "raise"):
            raise ValueError(f"unknown must be 'pad' or 'raise', got {unknown!r}")
        values = values if isinstance(values, (np.ndarray, pd.Index, pd.Series)) else list(values)
        tokens = self.index.get_indexer(pd.Index(values)) + 1  # -1 (not found) -> PAD
        if unknown == "raise" and (tokens == PAD).any():
            first = np.asarray(values)[tokens == PAD][0]
            raise KeyError(f"item {first!r} is not in the vocabulary ({self.num_items} items)")
        return tokens.astype(np.int64)

    def decode(self, tokens: Any) -> np.ndarray:
        """Raw ids of tokens (any shape); PAD and out-of-range tokens raise."""
        tokens = np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens, dtype=np.int64)
        bad = (tokens < 1) | (tokens > self.num_items)
        if bad.any():
            raise ValueError(f"token {int(tokens[bad][0])} is not an item (items are 1..{self.num_items}, 0 is PAD)")
        return self.index.to_numpy()[tokens - 1]

    @property
    def item_to_idx(self) -> dict:
        """``{raw id: token}``, the ``vocab.pkl`` layout of Torch-RecHub's preprocessing."""
        return {item: i + 1 for i, item in enumerate(self.index.tolist())}

    @property
    def idx_to_item(self) -> dict:
        return {i + 1: item for i, item in enumerate(self.index.tolist())}

    def save(self, path: str | Path) -> Path:
        """Write the raw ids (token order) as JSON."""
        from trainhub.files import write_text_atomic

        items = [v.item() if isinstance(v, np.generic) else v for v in self.index.tolist()]
        return write_text_atomic(path, json.dumps({"items": items}))

    @classmethod
    def load(cls, path: str | Path) -> "ItemVocab":
        return cls(json.loads(Path(path).read_text())["items"])

    def __len__(self) -> int:
        return self.num_items

    def __repr__(self) -> str:
        return f"ItemVocab({self.num_items} items, vocab_size={self.vocab_size})"


def encode_histories(vocab: ItemVocab, histories: Sequence[Sequence[Any]], max_seq_len: int,
                     times: Sequence[Sequence[Any]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``(seq_tokens [N, L], seq_time_diffs [N, L])`` of raw-id histories.

    Items outside the vocabulary (never seen in training) are dropped from the history, with a
    logged count: the model has no embedding for them. ``times`` (seconds, one list per history)
    give the time differences to each history's last item; without them they are 0.
    """
    tokens = torch.zeros(len(histories), max_seq_len, dtype=torch.long)
    diffs = torch.zeros(len(histories), max_seq_len, dtype=torch.long)
    unknown = 0
    for row, history in enumerate(histories):
        encoded = vocab.encode(list(history)) if len(history) else np.zeros(0, dtype=np.int64)
        known = encoded != PAD
        unknown += int((~known).sum())
        encoded = encoded[known][-max_seq_len:]
        if len(encoded):
            tokens[row, max_seq_len - len(encoded):] = torch.from_numpy(encoded)
        if times is not None and len(encoded):
            stamps = np.asarray(times[row], dtype=np.int64)
            if len(stamps) != len(history):
                raise ValueError(f"history {row} has {len(history)} items but {len(stamps)} timestamps")
            stamps = stamps[known][-max_seq_len:]
            diffs[row, max_seq_len - len(stamps):] = torch.from_numpy(stamps[-1] - stamps)
    if unknown:
        log.warning("dropped %d item(s) that are not in the vocabulary from the histories", unknown)
    return tokens, diffs
