"""Encode CSV or Parquet data bigger than memory into Parquet files ready for training.

Two streaming passes over the input, one chunk at a time: the first fits a
:class:`~trainhub.data.CategoricalEncoder` (skipped when one is given, e.g. the training set's
encoder for the test set), the second encodes and writes. Output files hold:

* sparse columns: int32 ids (0 missing, 1 out of vocabulary, 2.. seen values; or hashed);
* sequence columns: ``fixed_size_list<int32>[L]``, post-padded with 0;
* dense columns: float32, nulls replaced by ``dense_fill``;
* label columns: int64 when the input holds integers, else float32 (nulls are an error).

Everything is written to a temporary folder beside ``output_dir`` and swapped in when complete,
with ``encoder.json`` next to the data; a failure leaves any earlier output untouched.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from glob import escape as glob_escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from trainhub.data.encoders import CategoricalEncoder
from trainhub.data.files import PathLike, import_pyarrow, resolve_files

if TYPE_CHECKING:  # pandas is imported where it is used: `import trainhub` stays light
    import pandas as pd
    import torch

__all__ = ["encode_to_parquet", "pa_array_to_tensor"]

log = logging.getLogger(__name__)


def pa_array_to_tensor(arr: Any) -> "torch.Tensor":
    """One PyArrow array as a float32 tensor (Torch-RecHub's converter, same results).

    Numbers and booleans become ``[N]`` float32 with nulls as NaN; lists of them (all of one
    length) become ``[N, L]``. :class:`trainhub.data.ParquetIterableDataset` converts columns
    itself and keeps integer ids as integers; this function is for code that calls it directly.

    Raises:
        TypeError: the array (or its list values) is not numeric, boolean or null, e.g. strings.
        ValueError: the lists have different lengths (pad them, e.g. with ``pad_sequences``).
    """
    import torch

    pa = import_pyarrow()
    import pyarrow.compute as pc
    import pyarrow.types as pt

    def numeric(t: Any) -> bool:
        return pt.is_boolean(t) or pt.is_floating(t) or pt.is_integer(t) or pt.is_null(t)

    def as_numpy(a: Any) -> np.ndarray:
        # pyarrow hands out read-only buffers; torch.from_numpy needs writable memory.
        return np.asarray(a.cast(pa.float32()).to_numpy(zero_copy_only=False, writable=True), dtype=np.float32)

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if numeric(arr.type):
        return torch.from_numpy(as_numpy(arr))
    if not (pt.is_list(arr.type) or pt.is_large_list(arr.type) or pt.is_fixed_size_list(arr.type)):
        raise TypeError(f"pa_array_to_tensor: arrays of type {arr.type} cannot become a tensor; "
                        "only numbers, booleans, nulls and lists of them can")
    if not numeric(arr.type.value_type):
        raise TypeError(f"pa_array_to_tensor: lists of {arr.type.value_type} cannot become a tensor; "
                        "only lists of numbers, booleans or nulls can")
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if len(np.unique(lengths)) > 1:
        raise ValueError(f"pa_array_to_tensor: lists of different lengths ({int(lengths.min())} to "
                         f"{int(lengths.max())}) cannot form one tensor; pad them to one length first")
    values = as_numpy(arr.flatten())
    return torch.from_numpy(values.reshape(len(arr), -1 if len(arr) else 0))


CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
INPUT_SUFFIXES = (".parquet", ".pq") + CSV_SUFFIXES


def _is_parquet(path: str) -> bool:
    return path.lower().endswith((".parquet", ".pq"))


class _Columns:
    """The roles of the columns and the checks each input file must pass."""

    def __init__(self, sparse: Sequence[str], dense: Sequence[str], sequence: Mapping[str, str], label: Sequence[str]):
        self.sparse, self.dense, self.sequence, self.label = list(sparse), list(dense), dict(sequence), list(label)
        self.all = list(dict.fromkeys(self.sparse + self.dense + list(self.sequence) + self.label))
        if len(self.all) != len(self.sparse) + len(self.dense) + len(self.sequence) + len(self.label):
            raise ValueError("a column is listed under more than one of sparse, dense, sequence and label")
        if not self.all:
            raise ValueError("no columns to encode: pass sparse=, dense=, sequence= and/or label=")

    def check_parquet_schema(self, path: str, schema: Any) -> None:
        import pyarrow as pa

        missing = [c for c in self.all if schema.get_field_index(c) < 0]
        if missing:
            raise KeyError(f"column {missing[0]!r} is missing from file {path!r}; it has {schema.names[:20]}")

        def fail(col: str, need: str) -> None:
            raise TypeError(f"column {col!r} in file {path!r} has type {schema.field(col).type}; {need}")

        def is_text(t: Any) -> bool:
            return pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view",
                                                                                    lambda _: False)(t)

        def is_id(t: Any) -> bool:
            return pa.types.is_integer(t) or is_text(t) or (pa.types.is_dictionary(t) and is_id(t.value_type))

        for col in self.sparse:
            if not is_id(schema.field(col).type):
                fail(col, "ids must be integers or strings (cast float ids to integers first)")
        for col in self.sequence:
            t = schema.field(col).type
            is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
            if not (is_list and is_id(t.value_type)) and not is_text(t):
                fail(col, "a sequence must be a list of integers/strings, or a string of separated values")
        for col in self.dense + self.label:
            t = schema.field(col).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
                fail(col, "dense and label columns must be numbers")

    def check_csv_header(self, path: str, names: Sequence[str]) -> None:
        missing = [c for c in self.all if c not in names]
        if missing:
            raise KeyError(f"column {missing[0]!r} is missing from file {path!r}; it has {list(names)[:20]}")


def _read_chunks(files: Sequence[str], cols: _Columns, chunk_rows: int, csv_options: Mapping[str, Any]
                 ) -> Iterator[tuple[str, int, pd.DataFrame]]:
    """``(file, first row, DataFrame)`` chunks of at most ``chunk_rows`` rows, file after file."""
    import pandas as pd
    pa = import_pyarrow()
    import pyarrow.parquet as pq

    for path in files:
        first = 0
        try:
            if _is_parquet(path):
                reader = pq.ParquetFile(path, page_checksum_verification=True)
                cols.check_parquet_schema(path, reader.schema_arrow)
                batches = (b.to_pandas() for b in reader.iter_batches(batch_size=chunk_rows, columns=cols.all))
            else:
                try:
                    header = pd.read_csv(path, nrows=0, **csv_options).columns
                except pd.errors.EmptyDataError:
                    raise ValueError(f"{path!r} is empty (no header, no rows)") from None
                cols.check_csv_header(path, header)
                as_text = {c: str for c in cols.sparse + list(cols.sequence)}
                batches = pd.read_csv(path, usecols=cols.all, dtype=as_text, chunksize=chunk_rows, **csv_options)
            for chunk in batches:
                yield path, first, chunk
                first += len(chunk)
        except (pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
            raise ValueError(f"cannot read {path!r} (near row {first}): {e}") from None


def _numbers(chunk: pd.DataFrame, col: str, path: str, first: int) -> pd.Series:
    import pandas as pd

    values = chunk[col]
    if values.dtype.kind not in "iufb":
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna() & values.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise TypeError(f"column {col!r} in file {path!r} holds a non-number {values.iloc[row]!r} at row "
                            f"{first + row}; list it under sparse= to encode it as a category")
        values = numbers
    return values


def _encode_chunk(enc: CategoricalEncoder, cols: _Columns, chunk: pd.DataFrame, path: str, first: int,
                  dense_fill: float) -> Any:
    pa = import_pyarrow()
    arrays: dict[str, Any] = {}
    for col in cols.sparse:
        arrays[col] = pa.array(enc.encode_column(chunk[col], col).astype(np.int32))
    for col in cols.sequence:
        ids = enc.encode_sequence(chunk[col], col).astype(np.int32)  # [N, L]
        arrays[col] = pa.FixedSizeListArray.from_arrays(pa.array(ids.reshape(-1)), ids.shape[1])
    for col in cols.dense:
        values = _numbers(chunk, col, path, first).astype(np.float64).fillna(dense_fill)
        arrays[col] = pa.array(values.to_numpy(dtype=np.float32))
    for col in cols.label:
        values = _numbers(chunk, col, path, first)
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise ValueError(f"label column {col!r} in file {path!r} is missing at row {first + row}")
        integral = values.dtype.kind in "iub"
        arrays[col] = pa.array(values.to_numpy(dtype=np.int64 if integral else np.float32))
    return pa.table({c: arrays[c] for c in cols.all})


class _PartWriter:
    """Writes ``part-NNNNN.parquet`` files of ``rows_per_file`` rows in row groups of ``row_group_rows``."""

    def __init__(self, folder: Path, rows_per_file: int, row_group_rows: int):
        self.folder, self.rows_per_file, self.row_group_rows = folder, rows_per_file, row_group_rows
        self.pending: list[Any] = []
        self.pending_rows = 0
        self.writer = None
        self.file_rows = 0
        self.paths: list[Path] = []
        self.num_rows = 0

    def _next_size(self) -> int:
        return min(self.row_group_rows, self.rows_per_file - self.file_rows)

    def _flush(self, n: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
        head, rest = table.slice(0, n), table.slice(n)
        self.pending, self.pending_rows = ([rest] if len(rest) else []), len(rest)
        if self.writer is None:
            self.paths.append(self.folder / f"part-{len(self.paths):05d}.parquet")
            # Page CRCs: readers verify them, so a damaged page is an error naming the file, not wrong ids.
            self.writer = pq.ParquetWriter(self.paths[-1], head.schema, write_page_checksum=True)
        self.writer.write_table(head, row_group_size=n)
        self.file_rows += n
        self.num_rows += n
        if self.file_rows >= self.rows_per_file:
            self._close_file()

    def _close_file(self) -> None:
        self.writer.close()
        with open(self.paths[-1], "rb") as fh:
            os.fsync(fh.fileno())
        self.writer, self.file_rows = None, 0

    def write(self, table: Any) -> None:
        if len(table):
            self.pending.append(table)
            self.pending_rows += len(table)
        while self.pending_rows >= self._next_size():
            self._flush(self._next_size())

    def close(self) -> None:
        while self.pending_rows:
            self._flush(min(self.pending_rows, self._next_size()))
        if self.writer is not None:
            self._close_file()


def _swap_in(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` to ``out``, replacing an earlier output only now."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _remove_stale_outputs(out: Path) -> None:
    """Remove the temporary folders a killed conversion into ``out`` left (never a live one's)."""
    from trainhub.files import _writer_alive

    for entry in out.parent.glob(f".{glob_escape(out.name)}.*.tmp"):
        if entry.is_dir() and not _writer_alive(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
            log.info("removed %s, left by a conversion that did not finish", entry)


def encode_to_parquet(
    inputs: PathLike | Sequence[PathLike],
    output_dir: PathLike,
    *,
    sparse: Sequence[str] = (),
    dense: Sequence[str] = (),
    sequence: Sequence[str] | Mapping[str, str] = (),
    label: str | Sequence[str] = (),
    encoder: CategoricalEncoder | None = None,
    hash_buckets: int | Mapping[str, int] | None = None,
    min_freq: int = 1,
    max_len: int | Mapping[str, int] | None = None,
    sep: str = ",",
    rows_per_file: int = 1_000_000,
    row_group_rows: int = 65_536,
    chunk_rows: int = 100_000,
    dense_fill: float = 0.0,
    overwrite: bool = False,
    csv_options: Mapping[str, Any] | None = None,
) -> CategoricalEncoder:
    """Encode CSV/Parquet files chunk by chunk into ``output_dir/part-*.parquet`` + ``encoder.json``.

    Args:
        inputs: CSV (``.csv``, ``.tsv``, ``.txt``, optionally ``.gz``) or Parquet files,
            directories or glob patterns.
        output_dir: folder to create (or replace, with ``overwrite=True``).
        sparse: categorical columns (CSV values are read as text, so ``"007"`` stays ``"007"``).
        dense: numeric columns, written as float32.
        sequence: list columns (Parquet lists, or CSV strings split on ``sep``); a list of names
            (own vocabulary each) or ``{column: vocabulary column}`` to share a sparse column's ids.
        label: label column(s).
        encoder: a fitted encoder (e.g. the training set's) to apply instead of fitting one.
        hash_buckets: hash these vocabularies instead of counting them (an int for all, or per
            column), for vocabularies too big to hold; see :class:`CategoricalEncoder`.
        min_freq: values seen fewer times become out-of-vocabulary.
        max_len: sequence length (default: the longest in the data).
        sep: separator of sequences in CSV cells.
        rows_per_file: rows per output file.
        row_group_rows: rows per Parquet row group (the unit the dataset reads and shuffles).
        chunk_rows: rows read and encoded at a time (bounds memory).
        dense_fill: value written for missing dense values.
        overwrite: replace an existing non-empty ``output_dir`` (only once the new output is complete).
        csv_options: extra ``pandas.read_csv`` arguments (``sep="\\t"``, ``header=...``).

    Returns:
        The fitted encoder (also saved as ``output_dir/encoder.json``); its ``vocab_sizes`` give
        the features' ``vocab_size``.

    Example:
        >>> enc = encode_to_parquet("raw/train.csv", "data/train", sparse=[f"C{i}" for i in range(1, 27)],
        ...                         dense=[f"I{i}" for i in range(1, 14)], label="label")
        >>> encode_to_parquet("raw/test.csv", "data/test", sparse=enc.columns, dense=[...], label="label", encoder=enc)
        >>> train = ParquetIterableDataset("data/train", label_columns="label", shuffle=True)
    """
    import_pyarrow()
    if min(rows_per_file, row_group_rows, chunk_rows) < 1:
        raise ValueError("rows_per_file, row_group_rows and chunk_rows must be >= 1")
    files = resolve_files(inputs, INPUT_SUFFIXES)
    seq_map = dict(sequence) if isinstance(sequence, Mapping) else {s: s for s in sequence}
    cols = _Columns(sparse, dense, seq_map, [label] if isinstance(label, str) else list(label))
    out = Path(output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{str(out)!r} exists and is not empty; pass overwrite=True to replace it")
    options = dict(csv_options or {})

    if encoder is None:
        encoder = CategoricalEncoder(cols.sparse, min_freq, hash_buckets=hash_buckets, sequences=seq_map,
                                     max_len=max_len, sep=sep)
        for _, _, chunk in _read_chunks(files, cols, chunk_rows, options):
            encoder.partial_fit(chunk)
        log.info("fitted vocabularies: %s", encoder.vocab_sizes)
    else:
        unknown = [c for c in cols.sparse if c not in encoder.columns]
        unknown += [s for s in seq_map if s not in encoder.sequences]
        if unknown:
            raise ValueError(f"the given encoder does not encode columns {unknown}")

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_outputs(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
    try:
        writer = _PartWriter(tmp, rows_per_file, row_group_rows)
        for path, first, chunk in _read_chunks(files, cols, chunk_rows, options):
            writer.write(_encode_chunk(encoder, cols, chunk, path, first, dense_fill))
        writer.close()
        if writer.num_rows == 0:
            raise ValueError(f"the inputs {files[:5]} hold no rows")
        encoder.save(tmp / "encoder.json")
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %d rows in %d file(s) to %s", writer.num_rows, len(writer.paths), out)
    return encoder
