"""One embedding table per width, shared by many features, with row-sparse gradients.

Every feature of one ``embed_dim`` owns a slice of one ``[total_rows, D]`` weight: feature ``f``'s
id ``i`` is global row ``offset[f] + i``. A batch's ids for all of those features become one lookup,
and the backward pass returns a *row-sparse* gradient: the unique rows the batch touched and their
summed gradients, already coalesced. Row-wise optimizers (:mod:`trainhub.optim`) update just those
rows, so a step costs what the batch touches, not what the tables hold (the approach of
TorchRec/FBGEMM's table-batched embeddings, in plain PyTorch so it runs on any device).

With ``sparse_grad=False`` the table is an ordinary dense parameter (exact dense optimizer updates).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["FusedTable", "row_sparse_lookup", "sum_rows", "set_row_reader", "ROWWISE_ATTR", "is_tracing"]

# A row reader gives the values a training lookup should see for unique rows [U] of a weight:
# ``reader(weight, rows) -> [U, D]``, or None to read the weight as it is. Row-wise Adam uses it
# to apply motion it defers for untouched rows before the forward pass reads them.
RowReader = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | None"]
_row_readers: WeakIdKeyDictionary = WeakIdKeyDictionary()


def set_row_reader(weight: torch.Tensor, reader: RowReader | None) -> None:
    """Route training lookups of ``weight`` through ``reader`` (None removes it)."""
    if reader is None:
        _row_readers.pop(weight, None)
    else:
        _row_readers[weight] = reader

# Parameters marked with this attribute get row-sparse gradients and are updated (and, under
# torch.distributed, synchronised) by trainhub's row-wise optimizers instead of DDP's reducer.
ROWWISE_ATTR = "_trainhub_rowwise"


def is_tracing() -> bool:
    """True while the model is being traced or compiled (``torch.export``, ``torch.compile``,
    ``torch.jit.trace`` and both ONNX exporters).

    Code that reads tensor values on the host (id range checks) or uses a custom autograd function
    asks this first: such reads cannot be traced (``torch.export`` fails with
    ``GuardOnDataDependentSymNode``), and an exported graph only needs the plain forward.
    """
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def _sparse_rows(rows: torch.Tensor, values: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A coalesced COO gradient from unique sorted ``rows [U]`` and ``values [U, D]``."""
    return torch.sparse_coo_tensor(rows.unsqueeze(0), values, shape, is_coalesced=True, check_invariants=False)


def sum_rows(ids: torch.Tensor, values: torch.Tensor,
             num_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The unique ``ids`` (ascending) and the sum of ``values [N, D]`` over each id's occurrences.

    One sort of the ids, then the occurrences of each id are consecutive and one
    ``embedding_bag(mode="sum")`` over the sorted order adds them up: on the CPU about half the
    cost of finding the unique rows and scattering with ``index_add_`` (which adds row by row on
    one thread). The order of the additions is fixed by the stable sort, so results repeat exactly.
    ``num_rows`` (ids are below it) lets the sort take its faster forms (see :func:`_sort_ids`).
    """
    rows, order, offsets = _groups(ids, num_rows)
    return rows, torch.nn.functional.embedding_bag(order, values, offsets, mode="sum")


# torch sorts integers on the CPU with a parallel radix sort from this many elements on
# (ATen's GRAIN_SIZE) and with a comparison sort below, about seven times slower at 30,000.
_RADIX_MIN = 32768


def _sort_ids(ids: torch.Tensor, num_rows: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.sort(ids, stable=True)`` for row ids below ``num_rows``, in its fastest form: 32-bit
    keys when the rows fit (fewer radix passes), and on the CPU a batch of 16,384-32,767 ids
    padded to the radix sort's size with ids that sort last and are dropped again (the stable
    sort keeps the real ids' order). The sorted ids come back as int32 when they were sorted so.
    The ids must lie in ``[0, num_rows)``: they are not checked here (``EmbeddingCollection``
    checks them), and larger ones would wrap in 32 bits."""
    if num_rows is None or num_rows >= 2**31 - 1:
        return torch.sort(ids, stable=True)
    keys = ids.to(torch.int32)
    count = keys.numel()
    if keys.device.type == "cpu" and _RADIX_MIN // 2 <= count < _RADIX_MIN:
        padded = torch.cat([keys, keys.new_full((_RADIX_MIN - count,), num_rows)])
        sorted_ids, order = torch.sort(padded, stable=True)
        return sorted_ids[:count], order[:count]
    return torch.sort(keys, stable=True)


def _groups(ids: torch.Tensor, num_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unique ``ids`` (ascending, int64), the stable sort order, and where each id's run starts in it."""
    sorted_ids, order = _sort_ids(ids, num_rows)
    rows, counts = torch.unique_consecutive(sorted_ids, return_counts=True)
    return rows.long(), order, counts.cumsum(0).sub_(counts)


class _RowSparseLookup(torch.autograd.Function):
    """``weight[ids]`` whose gradient is row-sparse (unique rows, summed), not a dense table.

    With a row reader the unique rows are found in the forward pass (the sort is then reused by
    the backward) and the output is gathered from the reader's values for them.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, ids: torch.Tensor, frozen: torch.Tensor | None,
                reader: RowReader | None) -> torch.Tensor:
        ctx.weight_shape = weight.shape
        ctx.grouped = reader is not None
        if reader is None:
            ctx.save_for_backward(ids, frozen)
            return weight.index_select(0, ids)  # [N, D]
        rows, order, offsets = _groups(ids, weight.shape[0])
        ctx.save_for_backward(rows, order, offsets, frozen)
        values = reader(weight, rows)
        if values is None:
            return weight.index_select(0, ids)
        # each id's position among the unique rows: the run number of its place in the sort
        run = torch.zeros_like(ids)
        run[offsets[1:]] = 1
        inverse = torch.empty_like(ids).index_copy_(0, order, run.cumsum_(0))
        return values.index_select(0, inverse)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if ctx.grouped:
            rows, order, offsets, frozen = ctx.saved_tensors
            values = torch.nn.functional.embedding_bag(order, grad_out, offsets, mode="sum")
        else:
            ids, frozen = ctx.saved_tensors
            rows, values = sum_rows(ids, grad_out, ctx.weight_shape[0])  # [U], [U, D]
        if frozen is not None:  # padding rows keep a zero embedding and take no update
            values.masked_fill_(frozen.index_select(0, rows).unsqueeze(1), 0.0)
        return _sparse_rows(rows, values, ctx.weight_shape), None, None, None


def row_sparse_lookup(weight: torch.Tensor, ids: torch.Tensor, frozen: torch.Tensor | None = None) -> torch.Tensor:
    """Rows ``weight[ids]`` for flat int64 ``ids [N]`` -> ``[N, D]`` with a row-sparse gradient.

    ``frozen`` (bool ``[rows]``) marks rows whose gradient is dropped (padding rows).
    """
    if not (torch.is_grad_enabled() and weight.requires_grad) or is_tracing():
        # Inference and tracing take the plain gather: it exports, and there is no gradient to shape.
        return weight.index_select(0, ids)
    return _RowSparseLookup.apply(weight, ids, frozen, _row_readers.get(weight))


class FusedTable(nn.Module):
    """The rows of several logical tables of one width in one ``weight [num_rows, embed_dim]``.

    Args:
        sizes: ``{table_name: vocab_size}``, in the order the slices are laid out.
        embed_dim: width of every row.
        padding_rows: global rows that stay zero and are never updated.
        sparse_grad: return row-sparse gradients (True) or dense ones (False).
    """

    def __init__(self, sizes: dict[str, int], embed_dim: int, padding_rows: list[int] = (),
                 sparse_grad: bool = True):
        super().__init__()
        self.offsets: dict[str, int] = {}
        total = 0
        for name, size in sizes.items():
            self.offsets[name] = total
            total += int(size)
        self.sizes = dict(sizes)
        self.embed_dim = embed_dim
        self.weight = nn.Parameter(torch.empty(total, embed_dim))
        if padding_rows:
            frozen = torch.zeros(total, dtype=torch.bool)
            frozen[list(padding_rows)] = True
            self.register_buffer("frozen", frozen, persistent=False)
        else:
            self.frozen = None
        self.set_sparse_grad(sparse_grad)

    @property
    def sparse_grad(self) -> bool:
        return bool(getattr(self.weight, ROWWISE_ATTR, False))

    def set_sparse_grad(self, enabled: bool) -> None:
        setattr(self.weight, ROWWISE_ATTR, bool(enabled))

    def slice(self, name: str) -> torch.Tensor:
        """The rows of one logical table (a view: writes go to the fused weight)."""
        start = self.offsets[name]
        return self.weight[start:start + self.sizes[name]]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Global row ids ``[N]`` (int64) -> ``[N, D]``."""
        if self.sparse_grad:
            return row_sparse_lookup(self.weight, ids, self.frozen)
        rows = self.weight.index_select(0, ids)  # [N, D]
        if self.frozen is not None and rows.requires_grad:
            # Padding rows are zero, so masking changes no value and only stops their gradient.
            rows = rows * (~self.frozen.index_select(0, ids)).unsqueeze(1).to(rows.dtype)
        return rows

    def extra_repr(self) -> str:
        rows = self.weight.shape[0]
        return f"{len(self.sizes)} tables, {rows} rows x {self.embed_dim}, sparse_grad={self.sparse_grad}"
