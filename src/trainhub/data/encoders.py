"""Categorical encoding: fit on training data, map unseen values to an OOV id, save as JSON.

Ids: ``0`` = missing (NaN/None; also the padding id of sequences), ``1`` = out of vocabulary,
``2..`` = values seen in training (sorted, so the encoding does not depend on row order).

Data bigger than memory is fitted chunk by chunk with :meth:`CategoricalEncoder.partial_fit`
(same result as one :meth:`~CategoricalEncoder.fit` on all rows). A vocabulary too large to hold
can be replaced by hashing (``hash_buckets``): ids ``2 + hash(str(value)) % buckets``, with
pandas' SipHash under a fixed key, so they are the same in every process and run (different
values may share an id). Sequence columns (lists of values) are encoded item by item with the
vocabulary of their own or of a named shared column, and padded to a fixed length.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from trainhub.files import read_json, write_text_atomic

if TYPE_CHECKING:  # pandas is imported where it is used: `import trainhub` stays light
    import pandas as pd

__all__ = ["CategoricalEncoder", "MISSING_ID", "OOV_ID"]

MISSING_ID = 0
OOV_ID = 1
_FIRST_ID = 2


def _as_str(series: pd.Series) -> pd.Series:
    # Strings make ints and floats read from CSV/JSON compare equal after a save/load round trip.
    values = series.astype("object")
    return values.where(values.isna(), values.astype(str))


def _is_missing(cell: Any) -> bool:
    return cell is None or (isinstance(cell, float) and cell != cell)


class CategoricalEncoder:
    """Encode categorical (and sequence) columns of a DataFrame as integer ids.

    Args:
        columns: categorical columns, each with its own vocabulary.
        min_freq: values seen fewer times in training become OOV.
        hash_buckets: hash instead of keeping a vocabulary: an int for every vocabulary, or
            ``{column: buckets}`` (keys are vocabulary columns). A hashed column has
            ``buckets + 2`` ids.
        sequences: list columns (cells are lists/arrays, or strings split on ``sep``): a list of
            names (each with its own vocabulary) or ``{sequence: vocabulary column}`` to encode the
            items with another column's vocabulary (e.g. ``{"hist_item_id": "item_id"}``); the
            shared vocabulary is fitted on both columns.
        max_len: length of encoded sequences (an int, or per column); by default the longest seen
            in fit. Shorter ones are post-padded with 0, longer ones keep their last items.
        sep: separator of sequences given as strings (``"3,17,5"``).

    Example:
        >>> enc = CategoricalEncoder(["C1", "C2"]).fit(train_df)
        >>> train_df = enc.transform(train_df); test_df = enc.transform(test_df)
        >>> enc.vocab_sizes["C1"]    # pass as SparseFeature(vocab_size=...)
        >>> enc.save("model/encoder.json")
    """

    def __init__(self, columns: Iterable[str], min_freq: int = 1, *,
                 hash_buckets: int | Mapping[str, int] | None = None,
                 sequences: Iterable[str] | Mapping[str, str] | None = None,
                 max_len: int | Mapping[str, int] | None = None, sep: str = ","):
        self.columns = list(columns)
        self.min_freq = min_freq
        self.sequences = dict(sequences) if isinstance(sequences, Mapping) else {s: s for s in sequences or ()}
        sources = list(dict.fromkeys(self.columns + list(self.sequences.values())))
        for seq, source in self.sequences.items():
            if source not in self.columns and source != seq:
                raise ValueError(f"sequence {seq!r} shares the vocabulary of {source!r}, which is not a "
                                 f"categorical column ({self.columns})")
        if isinstance(hash_buckets, int):
            hash_buckets = {c: hash_buckets for c in sources}
        self.hash_buckets = {c: int(b) for c, b in (hash_buckets or {}).items()}
        for col, buckets in self.hash_buckets.items():
            if buckets < 1 or col not in sources:
                raise ValueError(f"hash_buckets[{col!r}] = {buckets}: needs >= 1 bucket and a vocabulary column "
                                 f"({sources})")
        self.max_len = {s: max_len for s in self.sequences} if isinstance(max_len, int) else dict(max_len or {})
        self.sep = sep
        self._vocab: dict[str, dict[str, int]] = {}
        self._counts: dict[str, pd.Series] = {}
        self._seen_len: dict[str, int] = {}
        self._stale = False
        self._lookups: dict[str, tuple[pd.Index, np.ndarray]] = {}

    # -- fitting ------------------------------------------------------------------------------
    @property
    def vocab_columns(self) -> list[str]:
        """Columns that own a vocabulary (or a hash space): the categorical ones, then own-vocabulary sequences."""
        return list(dict.fromkeys(self.columns + list(self.sequences.values())))

    def _check(self, df: pd.DataFrame, what: str) -> None:
        missing = [c for c in self.columns + list(self.sequences) if c not in df.columns]
        if missing:
            raise KeyError(f"CategoricalEncoder.{what}: columns {missing} not in the data "
                           f"(has {list(df.columns)[:20]})")

    def fit(self, df: pd.DataFrame) -> "CategoricalEncoder":
        self._vocab, self._counts, self._seen_len = {}, {}, {}
        return self.partial_fit(df)

    def partial_fit(self, df: pd.DataFrame) -> "CategoricalEncoder":
        """Add one chunk's value counts; fitting chunk by chunk gives the same vocabulary as one fit."""
        if self._vocab and not self._counts and not self._stale:
            raise RuntimeError("partial_fit on a loaded encoder: its counts are not saved; fit a new encoder")
        self._check(df, "partial_fit")
        chunks: dict[str, list[pd.Series]] = {c: [] for c in self.vocab_columns if c not in self.hash_buckets}
        for col in self.columns:
            if col in chunks:
                chunks[col].append(_as_str(df[col]).dropna())
        for seq, source in self.sequences.items():
            items, lengths = self._items(df[seq])
            self._seen_len[seq] = max(self._seen_len.get(seq, 0), int(lengths.max(initial=0)))
            if source in chunks:
                chunks[source].append(items.dropna())
        import pandas as pd

        for col, parts in chunks.items():
            counts = pd.concat(parts).value_counts() if parts else pd.Series(dtype=np.int64)
            previous = self._counts.get(col)
            self._counts[col] = counts if previous is None else previous.add(counts, fill_value=0)
        self._stale = True
        return self

    @property
    def vocab(self) -> dict[str, dict[str, int]]:
        """``{column: {value: id}}`` of every vocabulary column (hashed ones have none)."""
        if self._stale:
            for col, counts in self._counts.items():
                kept = sorted(counts[counts >= self.min_freq].index)
                self._vocab[col] = {value: i + _FIRST_ID for i, value in enumerate(kept)}
            self._stale = False
            self._lookups = {}
        return self._vocab

    @vocab.setter
    def vocab(self, value: dict[str, dict[str, int]]) -> None:
        self._vocab, self._counts, self._stale, self._lookups = value, {}, False, {}

    @property
    def fitted(self) -> bool:
        return bool(self.vocab) or (bool(self.hash_buckets) and set(self.hash_buckets) >= set(self.vocab_columns))

    @property
    def vocab_sizes(self) -> dict[str, int]:
        """Number of ids per column (sequences included), counting the missing and OOV ids."""
        sizes = {col: len(v) + _FIRST_ID for col, v in self.vocab.items()}
        sizes.update({col: b + _FIRST_ID for col, b in self.hash_buckets.items()})
        sizes.update({seq: sizes[source] for seq, source in self.sequences.items() if source in sizes})
        return sizes

    @property
    def sequence_lengths(self) -> dict[str, int]:
        """Length of each encoded sequence column (``max_len``, else the longest seen in fit)."""
        return {s: int(self.max_len.get(s, self._seen_len.get(s, 0))) for s in self.sequences}

    # -- encoding -----------------------------------------------------------------------------
    def _items(self, series: pd.Series) -> tuple[pd.Series, np.ndarray]:
        """Every item of a sequence column as strings (row-major) and each row's length."""
        import pandas as pd

        cells = [[] if _is_missing(c) else c.split(self.sep) if isinstance(c, str) else c for c in series]
        cells = [[] if isinstance(c, list) and c == [""] else c for c in cells]  # "" is an empty sequence
        lengths = np.fromiter((len(c) for c in cells), dtype=np.int64, count=len(cells))
        items = pd.Series(list(itertools.chain.from_iterable(cells)), dtype=object)
        return _as_str(items), lengths

    def _codes(self, values: pd.Series, source: str) -> np.ndarray:
        """Ids of string values (NaN -> MISSING_ID) with ``source``'s vocabulary or hash."""
        import pandas as pd

        missing = values.isna().to_numpy()
        if source in self.hash_buckets:
            hashed = pd.util.hash_array(values.fillna("").to_numpy(dtype=object))
            codes = (hashed % np.uint64(self.hash_buckets[source])).astype(np.int64) + _FIRST_ID
        else:
            if source not in self._lookups or self._stale:
                vocab = self.vocab[source]  # an Index looks a chunk up without rebuilding a dict each time
                self._lookups[source] = (pd.Index(list(vocab), dtype=object),
                                         np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab)))
            index, ids = self._lookups[source]
            pos = index.get_indexer(values.to_numpy(dtype=object))
            codes = np.where(pos >= 0, ids[pos], OOV_ID) if len(ids) else np.full(len(values), OOV_ID, np.int64)
        codes[missing] = MISSING_ID
        return codes

    def encode_column(self, series: pd.Series, column: str) -> np.ndarray:
        """``[N]`` int64 ids of one categorical column."""
        return self._codes(_as_str(series), column)

    def encode_sequence(self, series: pd.Series, column: str) -> np.ndarray:
        """``[N, L]`` int64 ids of one sequence column, post-padded with 0 (L: :attr:`sequence_lengths`)."""
        width = self.sequence_lengths[column]
        items, lengths = self._items(series)
        codes = self._codes(items, self.sequences[column])
        out = np.zeros((len(lengths), width), dtype=np.int64)
        if width == 0 or len(codes) == 0:
            return out
        rows = np.repeat(np.arange(len(lengths)), lengths)
        pos = np.arange(len(codes)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        pos = pos - np.repeat(np.maximum(lengths - width, 0), lengths)  # keep each row's last `width` items
        keep = pos >= 0
        out[rows[keep], pos[keep]] = codes[keep]
        return out

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        if not self.fitted:
            raise RuntimeError("CategoricalEncoder.transform called before fit")
        self._check(df, "transform")
        out = df.copy()
        for col in self.columns:
            out[col] = self.encode_column(df[col], col)
        for seq in self.sequences:
            out[seq] = list(self.encode_sequence(df[seq], seq))
        return out

    def fit_transform(self, df: pd.DataFrame) -> pd.DataFrame:
        return self.fit(df).transform(df)

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        payload = {"columns": self.columns, "min_freq": self.min_freq, "vocab": self.vocab,
                   "hash_buckets": self.hash_buckets, "sequences": self.sequences,
                   "max_len": self.sequence_lengths, "sep": self.sep}
        text = json.dumps(payload, ensure_ascii=False)
        return write_text_atomic(path, text)

    @classmethod
    def load(cls, path: str | Path) -> "CategoricalEncoder":
        """Read an encoder written by :meth:`save`. A file whose ids were edited into duplicates or
        gaps is refused: such ids would silently merge values or index past the embedding table."""
        payload = read_json(path)
        missing = [k for k in ("columns", "min_freq", "vocab") if not isinstance(payload, dict) or k not in payload]
        if missing:
            raise ValueError(f"{path}: missing keys {missing}; it was not written by CategoricalEncoder.save")
        enc = cls(payload["columns"], payload["min_freq"], hash_buckets=payload.get("hash_buckets"),
                  sequences=payload.get("sequences"), max_len=payload.get("max_len"), sep=payload.get("sep", ","))
        enc.vocab = {col: _checked_ids(path, col, m) for col, m in payload["vocab"].items()}
        return enc


def _checked_ids(path: str | Path, column: str, mapping: dict[str, Any]) -> dict[str, int]:
    """``{value: id}`` with ids that are integers, unique and exactly ``2 .. len + 1``."""
    way_out = "fit the encoder again and save it rather than editing the file"
    ids: dict[int, str] = {}
    for value, raw in mapping.items():
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"{path}: column {column!r}, value {value!r} has id {raw!r}, not an integer; {way_out}")
        if raw in ids:
            raise ValueError(f"{path}: column {column!r} gives id {raw} to both {ids[raw]!r} and {value!r}; "
                             f"ids must be unique ({way_out})")
        ids[raw] = value
    expected = range(_FIRST_ID, _FIRST_ID + len(mapping))
    stray = sorted(i for i in ids if i not in expected)
    if stray:
        raise ValueError(f"{path}: column {column!r} has ids {stray[:5]} outside {_FIRST_ID}..{expected[-1]} "
                         f"({len(mapping)} values take ids {_FIRST_ID}.. in order); {way_out}")
    return dict(mapping)
