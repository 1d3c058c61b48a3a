"""Small data helpers with Torch-RecHub's names."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["df_to_dict", "pad_sequences"]


def df_to_dict(data) -> dict[str, np.ndarray]:
    """``{column: values}`` for every column of a DataFrame."""
    return {name: data[name].to_numpy() for name in data.columns}


def pad_sequences(sequences: Sequence[Sequence[Any]], maxlen: int | None = None, dtype: str = "int32",
                  padding: str = "pre", truncating: str = "pre", value: float = 0.0) -> np.ndarray:
    """Pad/truncate sequences to one length (Keras semantics): ``[N, maxlen]``.

    ``padding``/``truncating`` ``"pre"`` work at the start of each sequence, ``"post"`` at the end.
    """
    if padding not in ("pre", "post") or truncating not in ("pre", "post"):
        raise ValueError(f"padding and truncating must be 'pre' or 'post', got {padding!r}, {truncating!r}")
    lengths = [len(s) for s in sequences]
    maxlen = max(lengths, default=0) if maxlen is None else maxlen
    out = np.full((len(sequences), maxlen), value, dtype=dtype)
    for i, seq in enumerate(sequences):
        if not len(seq) or maxlen == 0:
            continue
        seq = np.asarray(seq, dtype=dtype)
        seq = seq[-maxlen:] if truncating == "pre" else seq[:maxlen]
        if padding == "post":
            out[i, : len(seq)] = seq
        else:
            out[i, maxlen - len(seq):] = seq
    return out
