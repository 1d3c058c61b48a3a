"""Stream batches from Parquet files that need not fit in memory.

The rows of all files, in file order, form one stream. Each pass:

1. Training (``shuffle=True``): the row groups are put in a random order that depends only on
   ``(seed, epoch)``, so every process agrees on it and a resumed run replays it.
2. The stream is cut into one contiguous range per rank. With ``even_ranks`` (the default when
   shuffling) every rank gets exactly ``num_rows // world_size`` rows and the remainder is
   dropped, so every rank yields the same number of batches (distributed training would
   otherwise hang in an all-reduce). Without it (the default for evaluation) the ranges cover
   every row exactly once; their sizes differ by at most one row.
3. A rank's range is cut into windows of ``shuffle_buffer`` rows (rounded up to whole batches);
   DataLoader workers take turns on the windows, so every row is read by one worker only.
4. A window is read row group by row group, each forward in record batches (never a whole file
   nor a whole row group decoded at once), shuffled as a whole when ``shuffle``, and cut into
   batches. Only the rank's last batch can be short (``drop_last``
   drops it). The number of batches is known from the Parquet metadata alone (``len()``) and
   does not depend on the number of workers.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from trainhub.data.files import PathLike, arrow_to_numpy, column_kind, import_pyarrow, numpy_to_tensor, resolve_files
from trainhub.features import DenseFeature, SequenceFeature, SparseFeature

__all__ = ["ParquetIterableDataset", "ParquetLoader", "rank_and_world_size"]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1024
DEFAULT_SHUFFLE_BUFFER = 65_536


def rank_and_world_size() -> tuple[int, int]:
    """From ``torch.distributed`` when initialised, else the ``RANK``/``WORLD_SIZE`` environment, else 0/1."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _fragment(path: str, row_groups: Sequence[int] | None = None):
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    verify = pads.ParquetFragmentScanOptions(page_checksum_verification=True)
    return pads.ParquetFileFormat(default_fragment_scan_options=verify).make_fragment(
        path, filesystem=pafs.LocalFileSystem(), row_groups=row_groups)


def _open_metadata(path: str):
    """``(arrow schema, [rows per row group])`` of one file, or a ValueError naming it."""
    pa = import_pyarrow()
    try:
        fragment = _fragment(path)
        fragment.ensure_complete_metadata()
        return fragment.physical_schema, [rg.num_rows for rg in fragment.row_groups]
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"cannot read Parquet file {path!r}: {e}") from None


_FEATURE_KINDS = {SparseFeature: ("int",), SequenceFeature: ("list<int>",)}


class ParquetIterableDataset(IterableDataset):
    """Batches of column tensors streamed from Parquet files (a list, a directory or a glob).

    Torch-RecHub's ``ParquetIterableDataset(file_paths, columns=None, batch_size=1024)``, yielding
    dicts of tensors, with what a trainer needs on top (all keyword-only).

    Columns become tensors as follows: integers ``int_dtype`` (int64 by default; int32 halves the
    memory and suits models that only look ids up, which cast to int64 themselves); floats
    float32; bools bool; lists of numbers ``[B, L]``, post-padded with 0: a fixed-size list keeps
    its size (what :func:`trainhub.data.encode_to_parquet` writes), a variable one is padded to
    ``max_len`` when given, else to the longest list among the rows read together (one window),
    and a list longer than ``max_len`` keeps its last ``max_len`` items. Nulls and columns of
    other types (strings, timestamps, ...) raise an error naming the file and the column.

    Args:
        file_paths: Parquet files, directories (searched recursively; names starting with ``.`` or
            ``_`` are skipped) or glob patterns; a single one or a list.
        columns: columns to read (label columns included or not); ``None``: the columns of
            ``features`` when given, else every column of the first file.
        batch_size: rows per batch.
        label_columns: a column name (``y`` is ``[B]``) or a list of names (``y`` is ``[B, n]``);
            batches are then ``(x, y)``, else ``x`` alone. Labels are float32, or int64 when every
            label column holds integers.
        features: the model's features; their types are checked against every file up front
            (sparse features need integer columns, sequence features lists of integers).
        shuffle: random row-group order and shuffled windows, different in every epoch.
        shuffle_buffer: rows shuffled together (and taken in turn by workers); bounds memory.
        seed: the order depends only on ``(seed, epoch)``; every rank must pass the same seed.
        drop_last: drop the last, short batch of each rank.
        even_ranks: give every rank exactly ``num_rows // world_size`` rows (see the module
            docstring); default: ``shuffle`` (on for training, off for evaluation).
        max_len: pad/truncate variable-length list columns to this length (an int for all, or per column).
        int_dtype: ``torch.int64`` or ``torch.int32`` for integer feature columns.

    Example:
        >>> train = ParquetIterableDataset("data/train/", label_columns="label", shuffle=True, batch_size=2048)
        >>> val = ParquetIterableDataset("data/val/*.parquet", label_columns="label", batch_size=2048)
        >>> trainer.fit(train, val)                              # the dataset is its own loader
        >>> trainer.fit(ParquetLoader(train, num_workers=2), val)  # or read in worker processes
    """

    def __init__(
        self,
        file_paths: PathLike | Sequence[PathLike],
        columns: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        label_columns: str | Sequence[str] | None = None,
        features: Sequence[Any] | None = None,
        shuffle: bool = False,
        shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
        seed: int = 0,
        drop_last: bool = False,
        even_ranks: bool | None = None,
        max_len: int | Mapping[str, int] | None = None,
        int_dtype: torch.dtype = torch.int64,
    ):
        super().__init__()
        import_pyarrow()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int_dtype not in (torch.int64, torch.int32):
            raise ValueError(f"int_dtype must be torch.int64 or torch.int32, got {int_dtype}")
        self.files = resolve_files(file_paths)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.window_rows = -(-max(int(shuffle_buffer), 1) // self.batch_size) * self.batch_size
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.even_ranks = self.shuffle if even_ranks is None else bool(even_ranks)
        self.int_dtype = int_dtype
        self.epoch = 0
        self._placement = rank_and_world_size()
        self._single_label = isinstance(label_columns, str)
        self.label_columns = [label_columns] if isinstance(label_columns, str) else list(label_columns or [])

        schemas, sizes = zip(*(_open_metadata(f) for f in self.files))
        if columns is None:
            columns = [f.name for f in features] if features else list(schemas[0].names)
        self.x_columns = [c for c in dict.fromkeys(columns) if c not in self.label_columns]
        if not self.x_columns:
            raise ValueError("no feature columns to read (every selected column is a label)")
        self.max_len = {c: max_len for c in self.x_columns} if isinstance(max_len, int) else dict(max_len or {})
        self._kinds = self._check_schemas(schemas, features or ())
        # Every row group as (file index, row group index, rows), in file order.
        self.row_groups = [(fi, gi, n) for fi, groups in enumerate(sizes) for gi, n in enumerate(groups) if n]
        self.num_rows = sum(n for _, _, n in self.row_groups)
        log.info("%d Parquet file(s), %d row groups, %d rows", len(self.files), len(self.row_groups), self.num_rows)

    # -- validation ---------------------------------------------------------------------------
    def _check_schemas(self, schemas: Sequence[Any], features: Sequence[Any]) -> dict[str, str]:
        """Each column's kind (``"int"``, ``"list<int>"``...), checked in every file."""
        wanted = {f.name: f for f in features if isinstance(f, (SparseFeature, SequenceFeature, DenseFeature))}
        kinds: dict[str, tuple[str, str]] = {}
        for path, schema in zip(self.files, schemas):
            for col in self.x_columns + self.label_columns:
                if schema.get_field_index(col) < 0:
                    raise KeyError(f"column {col!r} is missing from file {path!r}; it has {schema.names[:20]}")
                arrow_type = schema.field(col).type
                kind = column_kind(arrow_type)
                if kind is None:
                    raise TypeError(f"column {col!r} in file {path!r} has type {arrow_type}, which cannot become "
                                    "a tensor; encode it first with trainhub.data.encode_to_parquet")
                if col in self.label_columns and kind.startswith("list"):
                    raise TypeError(f"label column {col!r} in file {path!r} holds lists ({arrow_type}); "
                                    "labels must be numbers")
                feature = wanted.get(col)
                allowed = _FEATURE_KINDS.get(type(feature))
                if allowed and kind not in allowed:
                    raise TypeError(f"column {col!r} in file {path!r} holds {arrow_type} values but "
                                    f"{type(feature).__name__} {col!r} needs {' or '.join(allowed)} ids; "
                                    "encode it with trainhub.data.encode_to_parquet")
                first = kinds.setdefault(col, (kind, path))
                if first[0] != kind:
                    raise TypeError(f"column {col!r} is {kind} in file {path!r} but {first[0]} in {first[1]!r}")
        return {col: kind for col, (kind, _) in kinds.items()}

    # -- epochs -------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle order of the next pass (the training loop calls this every epoch)."""
        self.epoch = int(epoch)
        self.rank_and_world_size()

    def rank_and_world_size(self) -> tuple[int, int]:
        """This process's ``(rank, world_size)``, looked up in the main process and remembered.

        DataLoader workers use the value their copy of the dataset was made with: a worker
        process does not necessarily see the process group of its parent.
        """
        if get_worker_info() is None:
            self._placement = rank_and_world_size()
        return self._placement

    @property
    def sampler(self) -> "ParquetIterableDataset":
        # The training loop calls ``loader.sampler.set_epoch(epoch)``; a dataset used as its own
        # loader answers it itself.
        return self

    # -- planning: which rows each rank and worker reads ----------------------------------------
    def rank_range(self, rank: int, world_size: int) -> tuple[int, int]:
        """The ``[start, stop)`` rows of the (permuted) stream that ``rank`` reads."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if self.even_ranks:
            per_rank = self.num_rows // world_size
            return rank * per_rank, (rank + 1) * per_rank
        return rank * self.num_rows // world_size, (rank + 1) * self.num_rows // world_size

    def _num_batches(self, num_rows: int) -> int:
        return num_rows // self.batch_size if self.drop_last else -(-num_rows // self.batch_size)

    def __len__(self) -> int:
        """Batches this process yields in one pass (over all of its DataLoader workers)."""
        start, stop = self.rank_range(*self.rank_and_world_size())
        return self._num_batches(stop - start)

    def _group_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.row_groups))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.row_groups))

    def _pieces(self, order: np.ndarray, ends: np.ndarray, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
        """``(row group, first row, stop row)`` pieces of the stream rows ``[start, stop)``."""
        k = int(np.searchsorted(ends, start, side="right"))
        while k < len(order) and start < stop:
            group_start = ends[k - 1] if k else 0
            end = min(stop, int(ends[k]))
            yield int(order[k]), start - int(group_start), end - int(group_start)
            start = end
            k += 1

    # -- reading ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        rank, world_size = self.rank_and_world_size()  # before the generator starts: eager
        if get_worker_info() is None:
            self.epoch += 1  # without set_epoch, successive passes still differ (workers get a copy)
        return self._iter_epoch(epoch, rank, world_size)

    def _iter_epoch(self, epoch: int, rank: int, world_size: int) -> Iterator[Any]:
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        start, stop = self.rank_range(rank, world_size)
        usable = self._num_batches(stop - start) * self.batch_size
        stop = min(stop, start + usable)
        order = self._group_order(epoch)
        ends = np.cumsum([self.row_groups[g][2] for g in order])
        cursors: dict[int, _GroupCursor] = {}
        num_windows = -(-(stop - start) // self.window_rows)
        for w in range(worker, num_windows, num_workers):
            lo = start + w * self.window_rows
            hi = min(lo + self.window_rows, stop)
            tensors = self._read_window(self._pieces(order, ends, lo, hi), cursors)
            if self.shuffle:
                perm = torch.from_numpy(np.random.default_rng([self.seed, epoch, lo]).permutation(hi - lo))
                tensors = {k: v.index_select(0, perm) for k, v in tensors.items()}
            for s in range(0, hi - lo, self.batch_size):
                yield self._make_batch({k: v[s:s + self.batch_size] for k, v in tensors.items()})

    def _read_rows(self, group: int, first: int, end: int, cursors: dict[int, "_GroupCursor"]) -> Any:
        """Rows ``[first, end)`` of one row group as a table; the cursor of the last group read is
        kept, so consecutive windows continue where the previous one stopped."""
        pa = import_pyarrow()
        fi, gi, _ = self.row_groups[group]
        path = self.files[fi]
        cursor = cursors.get(group)
        try:
            if cursor is None or cursor.start > first:
                cursors.clear()
                cursor = cursors[group] = _GroupCursor(path, gi, self.x_columns + self.label_columns,
                                                       min(self.window_rows, 65_536))
            table = pa.Table.from_batches(cursor.read(first, end))
        except (pa.ArrowException, OSError, StopIteration) as e:
            raise ValueError(f"cannot read row group {gi} of Parquet file {path!r}: {e!r}") from None
        for col in table.column_names:
            if table.column(col).null_count:
                raise ValueError(f"column {col!r} in file {path!r} has null values; fill them or encode the "
                                 "data with trainhub.data.encode_to_parquet (missing ids become 0)")
        return table

    def _read_window(self, pieces: Iterator[tuple[int, int, int]], cursors: dict[int, Any]) -> dict[str, torch.Tensor]:
        pa = import_pyarrow()
        tables = [self._read_rows(group, first, end, cursors) for group, first, end in pieces]
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
        out = {}
        for col in table.column_names:
            values = arrow_to_numpy(table.column(col), col, "the Parquet data", self.max_len.get(col))
            dtype = torch.int64 if col in self.label_columns else self.int_dtype
            out[col] = numpy_to_tensor(values, dtype)
        return out

    def _make_batch(self, columns: dict[str, torch.Tensor]) -> Any:
        x = {c: columns[c] for c in self.x_columns}
        if not self.label_columns:
            return x
        labels = [columns[c] for c in self.label_columns]
        if any(t.is_floating_point() or t.dtype == torch.bool for t in labels):
            labels = [t.float() for t in labels]
        y = labels[0] if self._single_label else torch.stack(labels, dim=1)  # [B] or [B, n]
        return x, y


class _GroupCursor:
    """Reads one row group forward in record batches: a big row group is never decoded whole
    (``pyarrow.parquet`` streams within a row group; a ``pyarrow.dataset`` fragment does not)."""

    def __init__(self, path: str, row_group: int, columns: list[str], batch_rows: int):
        import pyarrow.parquet as pq

        self.path = path
        self._file = pq.ParquetFile(path, page_checksum_verification=True)  # pages written with CRCs are checked
        self._batches = self._file.iter_batches(batch_size=batch_rows, row_groups=[row_group], columns=columns,
                                                use_threads=False)
        self.start = 0  # row (within the group) of the first row of ``self._head``
        self._head: Any = None

    def read(self, first: int, end: int) -> list[Any]:
        """Record batches holding rows ``[first, end)``; ``first`` must not be before ``start``."""
        out = []
        while first < end:
            if self._head is None:
                try:
                    self._head = next(self._batches)
                except OSError as err:  # e.g. a page whose CRC differs: name the file, never return its rows
                    raise ValueError(f"cannot read {self.path}: {err}") from None
            head_end = self.start + self._head.num_rows
            if head_end <= first:  # rows before this window: skip them
                self.start, self._head = head_end, None
                continue
            stop = min(end, head_end)
            out.append(self._head.slice(first - self.start, stop - first))
            first = stop
        return out


class ParquetLoader:
    """A DataLoader over a :class:`ParquetIterableDataset` that reads in worker processes.

    The dataset already yields whole batches (``batch_size=None`` underneath). Unlike a plain
    ``DataLoader(dataset, batch_size=None)``, the training loop finds ``sampler.set_epoch`` here,
    so each epoch's order is set before the workers start and a resumed run replays it. Workers
    are started for each pass (not persistent) so that they see the new epoch.

    Args:
        dataset: the dataset to read.
        num_workers: worker processes; each reads its own windows of rows.
        **kwargs: other ``DataLoader`` options (``pin_memory``, ``prefetch_factor``, ...).

    Example:
        >>> loader = ParquetLoader(ParquetIterableDataset("train/", label_columns="label", shuffle=True),
        ...                        num_workers=2, pin_memory=True)
    """

    def __init__(self, dataset: ParquetIterableDataset, num_workers: int = 0, **kwargs: Any):
        if kwargs.get("persistent_workers"):
            raise ValueError("persistent workers would keep the first epoch's order; ParquetLoader restarts them")
        self.dataset = dataset
        self.num_workers = num_workers
        self._loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, **kwargs)

    @property
    def sampler(self) -> ParquetIterableDataset:
        return self.dataset  # has set_epoch

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers == 0:
            return iter(self._loader)  # the dataset advances its own epoch
        self.dataset.rank_and_world_size()  # workers copy the rank seen here
        it = iter(self._loader)  # workers start now, with a copy of the current epoch and rank
        self.dataset.epoch += 1
        return it
