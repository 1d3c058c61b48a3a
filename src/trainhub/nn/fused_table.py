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

import torch
from torch import nn

__all__ = ["FusedTable", "row_sparse_lookup", "unique_rows", "ROWWISE_ATTR", "is_tracing"]

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


def unique_rows(ids: torch.Tensor, num_rows: int, scratch: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(ids, sorted=True, return_inverse=True)`` for ids in ``[0, num_rows)``.

    A batch touches few rows of a table that is not huge, so a mark-and-scan over a row bitmap
    (``O(num_rows)`` memory traffic, no sort) beats a sort of the batch's ids; for tables much
    larger than the batch the sort wins. ``scratch`` keeps the bitmap and slot buffers between
    calls (they are left clean after use).
    """
    if num_rows > 64 * ids.numel() or scratch is None:
        return torch.unique(ids, sorted=True, return_inverse=True)
    seen, slot = scratch.get("seen"), scratch.get("slot")
    if seen is None or seen.numel() != num_rows or seen.device != ids.device:
        seen = scratch["seen"] = torch.zeros(num_rows, dtype=torch.bool, device=ids.device)
        slot = scratch["slot"] = torch.empty(num_rows, dtype=torch.int64, device=ids.device)
    seen[ids] = True
    rows = seen.nonzero().squeeze(1)  # [U], ascending
    seen[rows] = False
    slot[rows] = torch.arange(rows.numel(), device=ids.device)
    return rows, slot[ids]


class _RowSparseLookup(torch.autograd.Function):
    """``weight[ids]`` whose gradient is row-sparse (unique rows, summed), not a dense table."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, ids: torch.Tensor, frozen: torch.Tensor | None,
                scratch: dict | None) -> torch.Tensor:
        ctx.save_for_backward(ids, frozen)
        ctx.weight_shape = weight.shape
        ctx.scratch = scratch
        return weight.index_select(0, ids)  # [N, D]

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        ids, frozen = ctx.saved_tensors
        rows, inverse = unique_rows(ids, ctx.weight_shape[0], ctx.scratch)  # [U], [N]
        values = grad_out.new_zeros(rows.numel(), grad_out.shape[1]).index_add_(0, inverse, grad_out)  # [U, D]
        if frozen is not None:  # padding rows keep a zero embedding and take no update
            values.masked_fill_(frozen.index_select(0, rows).unsqueeze(1), 0.0)
        return _sparse_rows(rows, values, ctx.weight_shape), None, None, None


def row_sparse_lookup(weight: torch.Tensor, ids: torch.Tensor, frozen: torch.Tensor | None = None,
                      scratch: dict | None = None) -> torch.Tensor:
    """Rows ``weight[ids]`` for flat int64 ``ids [N]`` -> ``[N, D]`` with a row-sparse gradient.

    ``frozen`` (bool ``[rows]``) marks rows whose gradient is dropped (padding rows); ``scratch``
    is a dict the lookup may keep buffers in (see :func:`unique_rows`).
    """
    if not (torch.is_grad_enabled() and weight.requires_grad) or is_tracing():
        # Inference and tracing take the plain gather: it exports, and there is no gradient to shape.
        return weight.index_select(0, ids)
    return _RowSparseLookup.apply(weight, ids, frozen, scratch)


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
        self._scratch: dict = {}  # buffers for unique_rows; not state
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
            return row_sparse_lookup(self.weight, ids, self.frozen, self._scratch)
        rows = self.weight.index_select(0, ids)  # [N, D]
        if self.frozen is not None and rows.requires_grad:
            # Padding rows are zero, so masking changes no value and only stops their gradient.
            rows = rows * (~self.frozen.index_select(0, ids)).unsqueeze(1).to(rows.dtype)
        return rows

    def extra_repr(self) -> str:
        rows = self.weight.shape[0]
        return f"{len(self.sizes)} tables, {rows} rows x {self.embed_dim}, sparse_grad={self.sparse_grad}"
