"""Small data helpers with Torch-RecHub's names."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["df_to_dict", "pad_sequences", "array_replace_with_dict"]


def _column_array(values: np.ndarray) -> np.ndarray:
    """A column of equal-length lists (e.g. padded histories) becomes one ``[N, L]`` array."""
    if values.dtype != object or not len(values) or not isinstance(values[0], (list, tuple, np.ndarray)):
        return values
    if not all(isinstance(v, (list, tuple, np.ndarray)) for v in values) or len({len(v) for v in values}) > 1:
        return values  # ragged or mixed: stays one object per row; pad it (pad_sequences) before training
    return np.array(values.tolist())


def df_to_dict(data) -> dict[str, np.ndarray]:
    """``{column: numpy array}`` for every column of a DataFrame.

    As in Torch-RecHub, a column whose rows are lists of one length (the padded histories of
    :func:`trainhub.data.generate_seq_feature`) becomes a 2-D array ``[N, L]``, so ``x[col][i, t]``
    works; lists of different lengths stay a 1-D object array (one list per row).
    """
    return {name: _column_array(data[name].to_numpy()) for name in data.columns}


def array_replace_with_dict(array: Any, dic: dict) -> np.ndarray:
    """Map every value of ``array`` through ``dic`` (Torch-RecHub's helper, e.g. item id -> category).

    Args:
        array: numpy array (any shape) whose values are all keys of ``dic``.
        dic: ``{old value: new value}``.

    Returns:
        An array of ``array``'s shape holding the mapped values.

    Raises:
        KeyError: a value of ``array`` is not a key of ``dic`` (Torch-RecHub returned a wrong
            value or raised IndexError there); the message names the value.
    """
    if not dic:
        raise ValueError("array_replace_with_dict: the mapping is empty")
    array = np.asarray(array)
    keys = np.array(list(dic.keys()))
    values = np.array(list(dic.values()))
    order = keys.argsort()
    sorted_keys = keys[order]
    pos = np.searchsorted(sorted_keys, array).clip(0, len(keys) - 1)
    missing = sorted_keys[pos] != array
    if missing.any():
        absent = np.unique(array[missing])
        shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in absent[:5])
        raise KeyError(f"array_replace_with_dict: {len(absent)} value(s) have no entry in the mapping ({shown}"
                       f"{', ...' if len(absent) > 5 else ''}); add them to the dict or drop those rows first")
    return values[order[pos]]


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
