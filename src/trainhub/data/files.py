"""Finding data files and turning Arrow columns into tensors, with errors that name file and column.

Shared by :class:`trainhub.data.ParquetIterableDataset` (reading) and
:func:`trainhub.data.encode_to_parquet` (converting). ``pyarrow`` is imported lazily (extra ``parquet``).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch

__all__ = ["resolve_files", "import_pyarrow", "column_kind", "list_to_padded", "arrow_to_numpy"]

PathLike = Union[str, os.PathLike]
PARQUET_SUFFIXES = (".parquet", ".pq")


def import_pyarrow():
    """``pyarrow``, or an ImportError that names the extra to install."""
    try:
        import pyarrow
        import pyarrow.dataset  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading Parquet needs pyarrow: pip install 'trainhub[parquet]'") from e
    return pyarrow


def _hidden(path: Path, root: Path) -> bool:
    # Skip files in or under names starting with "." or "_" (temporary files, _SUCCESS, _metadata).
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def resolve_files(paths: PathLike | Sequence[PathLike], suffixes: Sequence[str] = PARQUET_SUFFIXES) -> list[str]:
    """Expand files, directories (searched recursively for ``suffixes``) and glob patterns.

    Files are returned in sorted order within each entry, entries in the order given.

    Raises:
        FileNotFoundError: an entry matches no file (names the entry).
    """
    entries = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not entries:
        raise FileNotFoundError("no data files given (an empty list)")
    files: list[str] = []
    for entry in entries:
        text = os.fspath(entry)
        path = Path(text)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*")
                           if p.is_file() and p.name.lower().endswith(tuple(suffixes)) and not _hidden(p, path))
            if not found:
                raise FileNotFoundError(f"directory {text!r} holds no {'/'.join(suffixes)} files")
        elif path.is_file():
            found = [text]
        elif glob.has_magic(text):
            found = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            if not found:
                raise FileNotFoundError(f"the pattern {text!r} matches no file")
        else:
            raise FileNotFoundError(f"no such file or directory: {text!r}")
        files.extend(found)
    return list(dict.fromkeys(files))  # a file named twice is read once


def column_kind(arrow_type: Any) -> str | None:
    """``"int"``, ``"float"``, ``"bool"``, ``"list<int>"``, ``"list<float>"``, or None (no tensor form)."""
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = column_kind(t.value_type)
        return f"list<{inner}>" if inner in ("int", "float") else None
    return None


def list_to_padded(column: Any, max_len: int | None, name: str) -> np.ndarray:
    """A list Arrow array as ``[N, L]`` numpy, post-padded with 0.

    Fixed-size lists keep their size unless ``max_len`` is given; variable lists are padded to
    ``max_len``, else to their longest list. A list longer than ``max_len`` keeps its LAST
    ``max_len`` items (the most recent, for histories in time order).
    """
    import pyarrow as pa

    n = len(column)
    if pa.types.is_fixed_size_list(column.type):
        size = column.type.list_size
        values = column.flatten().to_numpy(zero_copy_only=False).reshape(n, size)
        if max_len is None or max_len == size:
            return values
        offsets = np.arange(n + 1, dtype=np.int64) * size
        flat = values.reshape(-1)
    else:
        offsets = column.offsets.to_numpy().astype(np.int64)
        flat = column.values.to_numpy(zero_copy_only=False)  # offsets index the unsliced child
    lengths = offsets[1:] - offsets[:-1]
    width = int(lengths.max(initial=0)) if max_len is None else int(max_len)
    out = np.zeros((n, width), dtype=flat.dtype)
    if width == 0 or n == 0:
        return out
    take = np.minimum(lengths, width)  # [N]
    start = offsets[:-1] + lengths - take  # keep the last `take` items
    pos = np.arange(width)
    mask = pos[None, :] < take[:, None]  # [N, L]
    idx = start[:, None] + pos[None, :]
    out[mask] = flat[idx[mask]]
    return out


def arrow_to_numpy(column: Any, name: str, where: str, max_len: int | None = None) -> np.ndarray:
    """One Arrow column as numpy (lists padded to ``[N, L]``); nulls are refused, naming ``where``."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        raise ValueError(f"column {name!r} in {where} has {column.null_count} null value(s); fill them or "
                         "encode the data with trainhub.data.encode_to_parquet (missing ids become 0)")
    if column_kind(column.type) is None:
        raise TypeError(f"column {name!r} in {where} has type {column.type}, which cannot become a tensor; "
                        "encode it first with trainhub.data.encode_to_parquet")
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(
            column.type):
        if column.flatten().null_count:
            raise ValueError(f"column {name!r} in {where} has null items inside its lists")
        return list_to_padded(column, max_len, name)
    return column.to_numpy(zero_copy_only=False)


def numpy_to_tensor(values: np.ndarray, int_dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Floats become float32, integers ``int_dtype``, bools stay bool; always a fresh writable copy."""
    if values.dtype.kind == "f":
        values = values.astype(np.float32)
    elif values.dtype.kind in "iu":
        values = values.astype(torch.empty((), dtype=int_dtype).numpy().dtype)
    else:
        values = np.array(values, copy=True)
    return torch.from_numpy(np.ascontiguousarray(values))
