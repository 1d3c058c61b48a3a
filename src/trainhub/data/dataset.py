"""In-memory datasets whose batches are slices of whole tensors.

``DictDataset.__getitems__`` receives the indices of a whole batch and answers with one
``index_select`` per column, so no per-sample Python dicts are built or collated. It plugs into
an ordinary ``torch.utils.data.DataLoader`` (samplers, workers and DistributedSampler all work).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["DictDataset", "EpochShuffleSampler", "make_loader", "to_tensor", "passthrough_collate", "TorchDataset",
           "PredictDataset"]


def to_tensor(name: str, values: Any) -> torch.Tensor:
    """Turn a column (numpy, pandas, list, tensor) into a tensor, or say which column is wrong."""
    if isinstance(values, torch.Tensor):
        return values
    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    arr = np.asarray(values)
    if arr.dtype == object:
        try:
            arr = np.stack([np.asarray(v) for v in arr]) if arr.ndim == 1 and len(arr) else arr.astype(np.float64)
        except (ValueError, TypeError):
            raise TypeError(
                f"column {name!r} holds non-numeric values (e.g. {values[0]!r}); encode it first "
                f"(trainhub.data.CategoricalEncoder) or pad its sequences (trainhub.data.pad_sequences)"
            ) from None
    if arr.dtype.kind in "US":
        raise TypeError(
            f"column {name!r} holds strings (e.g. {str(arr.flat[0])!r}); "
            "encode it first with trainhub.data.CategoricalEncoder"
        )
    if arr.dtype.kind == "f" and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if arr.dtype.kind in "iu" and arr.dtype not in (np.int64, np.int32):
        arr = arr.astype(np.int64)  # int32 stays int32: half the memory, and lookups take it
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # e.g. pandas copy-on-write views; torch wants writable memory
        arr = arr.copy()
    return torch.from_numpy(arr)


def passthrough_collate(batch: Any) -> Any:
    """The dataset already built the batch in ``__getitems__``."""
    return batch


class DictDataset(Dataset):
    """Columns ``x = {name: array [N, ...]}`` and optional labels ``y [N, ...]``.

    Indexing one row gives ``({name: value}, label)`` (or the dict alone without labels);
    ``__getitems__`` gives a whole batch the same way, with ``[B, ...]`` tensors.
    """

    def __init__(self, x: Mapping[str, Any], y: Any = None, rows: torch.Tensor | None = None):
        if len(list(x.keys())) == 0:
            raise ValueError("the input x has no columns")
        self.x = {name: to_tensor(name, values) for name, values in x.items()}
        self.y = None if y is None or (isinstance(y, Sequence) and len(y) == 0) else to_tensor("label", y)
        lengths = {name: len(t) for name, t in self.x.items()}
        if self.y is not None:
            lengths["label (y)"] = len(self.y)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns have different numbers of rows: {lengths}")
        # A subset shares the columns and keeps only its row numbers: no copy of the data.
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long)
        self.num_rows = next(iter(lengths.values())) if self.rows is None else len(self.rows)

    def __len__(self) -> int:
        return self.num_rows

    def _source_rows(self, indices: Any) -> Any:
        return indices if self.rows is None else self.rows[indices]

    def __getitem__(self, i: int):
        i = self._source_rows(i)
        row = {k: v[i] for k, v in self.x.items()}
        return row if self.y is None else (row, self.y[i])

    def __getitems__(self, indices: Sequence[int]):
        idx = self._source_rows(torch.as_tensor(indices, dtype=torch.long))
        batch = {k: v.index_select(0, idx) for k, v in self.x.items()}
        return batch if self.y is None else (batch, self.y.index_select(0, idx))

    def subset(self, indices: torch.Tensor) -> "DictDataset":
        """The given rows of this dataset, sharing its columns (no copy of the data)."""
        return DictDataset(self.x, self.y, rows=self._source_rows(torch.as_tensor(indices, dtype=torch.long)))


def _column_lengths(x: Mapping[str, Any]) -> dict[str, int]:
    if not hasattr(x, "items") or not len(list(x.keys())):
        raise ValueError(f"x must be a dict of columns {{name: values}}, got {type(x).__name__}")
    return {name: len(values) for name, values in x.items()}


class TorchDataset(Dataset):
    """Torch-RecHub's row dataset: item ``i`` is ``({name: x[name][i]}, y[i])``, values as given.

    Columns are indexed, not converted, so they may hold anything indexable: numpy arrays, or
    Python lists of lists of different lengths for a custom ``collate_fn`` to pad (session-based
    NARM/STAMP). With ``DataLoader``'s default collate the values become tensors. For training
    from whole columns of numbers, :class:`DictDataset` slices a batch in one step instead.

    Args:
        x: ``{name: column}``, each column as long as ``y``.
        y: labels.
    """

    def __init__(self, x: Mapping[str, Any], y: Any):
        super().__init__()
        lengths = _column_lengths(x)
        lengths["label (y)"] = len(y)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns have different numbers of rows: {lengths}")
        self.x, self.y = x, y

    def __getitem__(self, index: int):
        return {k: v[index] for k, v in self.x.items()}, self.y[index]

    def __len__(self) -> int:
        return len(self.y)


class PredictDataset(Dataset):
    """Torch-RecHub's unlabelled row dataset: item ``i`` is ``{name: x[name][i]}``."""

    def __init__(self, x: Mapping[str, Any]):
        super().__init__()
        lengths = _column_lengths(x)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns have different numbers of rows: {lengths}")
        self.x = x
        self.num_rows = next(iter(lengths.values()))

    def __getitem__(self, index: int):
        return {k: v[index] for k, v in self.x.items()}

    def __len__(self) -> int:
        return self.num_rows


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A random order per epoch that depends only on ``(seed, epoch)``.

    The training loop calls ``set_epoch`` (as for ``DistributedSampler``), so a resumed run sees
    the same order in each epoch as an uninterrupted one.
    """

    def __init__(self, num_rows: int, seed: int | None = None):
        self.num_rows = num_rows
        self.seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1  # without set_epoch, successive passes still differ
        return iter(torch.randperm(self.num_rows, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_rows


def check_batch_size(batch_size: Any, name: str = "batch_size") -> None:
    """A positive integer, or a ValueError naming the parameter and the value."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {batch_size!r}")


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, num_workers: int = 0,
                drop_last: bool = False, seed: int | None = None, **kwargs: Any) -> DataLoader:
    """A DataLoader over a :class:`DictDataset` that keeps its batch slicing. Shuffling uses
    :class:`EpochShuffleSampler` (an unseeded one draws its seed from torch's global RNG)."""
    check_batch_size(batch_size)
    sampler = EpochShuffleSampler(len(dataset), seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=drop_last, collate_fn=passthrough_collate, **kwargs)
