"""Categorical encoding: fit on training data, map unseen values to an OOV id, save as JSON.

Ids: ``0`` = missing (NaN/None; also the padding id of sequences), ``1`` = out of vocabulary,
``2..`` = values seen in training (sorted, so the encoding does not depend on row order).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from trainhub.engine.checkpoint import write_text_atomic

__all__ = ["CategoricalEncoder", "MISSING_ID", "OOV_ID"]

MISSING_ID = 0
OOV_ID = 1
_FIRST_ID = 2


def _as_str(series: pd.Series) -> pd.Series:
    # Strings make ints and floats read from CSV/JSON compare equal after a save/load round trip.
    values = series.astype("object")
    return values.where(values.isna(), values.astype(str))


class CategoricalEncoder:
    """Encode categorical columns of a DataFrame as integer ids.

    Args:
        columns: columns to encode.
        min_freq: values seen fewer times in training become OOV.

    Example:
        >>> enc = CategoricalEncoder(["C1", "C2"]).fit(train_df)
        >>> train_df = enc.transform(train_df); test_df = enc.transform(test_df)
        >>> enc.vocab_sizes["C1"]    # pass as SparseFeature(vocab_size=...)
        >>> enc.save("model/encoder.json")
    """

    def __init__(self, columns: Iterable[str], min_freq: int = 1):
        self.columns = list(columns)
        self.min_freq = min_freq
        self.vocab: dict[str, dict[str, int]] = {}

    def fit(self, df: pd.DataFrame) -> "CategoricalEncoder":
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise KeyError(f"CategoricalEncoder.fit: columns {missing} not in the data (has {list(df.columns)[:20]})")
        for col in self.columns:
            counts = _as_str(df[col]).dropna().value_counts()
            kept = sorted(counts[counts >= self.min_freq].index)
            self.vocab[col] = {value: i + _FIRST_ID for i, value in enumerate(kept)}
        return self

    @property
    def vocab_sizes(self) -> dict[str, int]:
        """Number of ids per column, including the missing and OOV ids."""
        return {col: len(v) + _FIRST_ID for col, v in self.vocab.items()}

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        if not self.vocab:
            raise RuntimeError("CategoricalEncoder.transform called before fit")
        out = df.copy()
        for col in self.columns:
            if col not in df.columns:
                raise KeyError(f"CategoricalEncoder.transform: column {col!r} not in the data")
            values = _as_str(df[col])
            codes = values.map(self.vocab[col])
            codes = codes.where(values.notna(), MISSING_ID).fillna(OOV_ID)
            out[col] = codes.astype(np.int64)
        return out

    def fit_transform(self, df: pd.DataFrame) -> pd.DataFrame:
        return self.fit(df).transform(df)

    def save(self, path: str | Path) -> Path:
        payload = {"columns": self.columns, "min_freq": self.min_freq, "vocab": self.vocab}
        text = json.dumps(payload, ensure_ascii=False)
        return write_text_atomic(path, text)

    @classmethod
    def load(cls, path: str | Path) -> "CategoricalEncoder":
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        enc = cls(payload["columns"], payload["min_freq"])
        enc.vocab = {col: {k: int(v) for k, v in m.items()} for col, m in payload["vocab"].items()}
        return enc
