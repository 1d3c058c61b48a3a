"""The learned item table of HSTU and SASRec, with row-sparse updates under the trainers.

A next-item model reads its ``[V, D]`` item table twice: for the input tokens, and (with tied
embeddings) again for the items it scores. With an ordinary ``nn.Embedding`` every step's gradient
is a dense ``[V, D]`` tensor and the optimizer updates all ``V`` rows, so at a million items a
step costs what the table holds, not what the batch touches.

:class:`ItemEmbedding` is a :class:`~trainhub.nn.fused_table.FusedTable` with ``nn.Embedding``'s
names (``weight``, ``num_embeddings``, ``embedding_dim``, ``padding_idx``), so checkpoints keep the
key ``token_embedding.weight``. Like every trainhub table it is dense on a bare model (any
``torch.optim`` optimizer works) and row-sparse once a trainer switches it
(``set_sparse_embeddings``, which ``SeqTrainer`` calls with ``sparse_embeddings=True``, the
default). The switch also marks the model's other item-indexed parameters that it is
:meth:`ItemEmbedding.link`-ed to (the output bias ``[V]``; with untied embeddings the output
projection's ``[V, D]`` weight and ``[V]`` bias), so they too go to the row-wise optimizer and
take row-sparse gradients through :func:`gather_item_rows`. (Under torchrun with more than one
process the ``[V]`` biases stay dense, averaged by DDP: the row-wise optimizers gather ``[rows, D]``
gradients across processes only.)

Which rows get a gradient, with the table switched to row-sparse:

* sampled softmax (``score(hidden, item_ids)``): the rows of the input tokens and of the
  candidates, as a row-sparse gradient; the row-wise optimizer updates those rows only;
* full softmax (``score(hidden, None)`` / ``forward``): every item is scored, so every row has a
  gradient. ``F.linear`` over the whole table gives a dense gradient, autograd adds the input
  lookup's rows into it, and the row-wise optimizer applies its dense rule (for Adam, exactly dense
  Adam). Full softmax on a row-sparse table therefore densifies: it is correct, and it costs
  ``O(V)`` per step like the logits themselves.

Inference, ``torch.no_grad()`` and tracing/ONNX export read the table with a plain gather.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainhub.nn import fused_table
from trainhub.nn.fused_table import ROWWISE_ATTR, FusedTable, is_tracing, row_sparse_lookup

__all__ = ["ItemEmbedding", "gather_item_rows", "takes_row_sparse_grad"]


class ItemEmbedding(FusedTable):
    """``nn.Embedding(num_embeddings, embedding_dim, padding_idx)`` as a one-table
    :class:`~trainhub.nn.fused_table.FusedTable`: ``ids [...] -> [..., D]``, row-sparse gradients
    when switched on (``sparse_grad`` / ``set_sparse_grad``), the padding row zero and never updated.

    Args:
        num_embeddings: rows (items, PAD included).
        embedding_dim: width.
        padding_idx: the PAD row (None: no padding row).
        sparse_grad: start row-sparse (False: a dense parameter, as ``nn.Embedding``).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = 0,
                 sparse_grad: bool = False):
        padding = [] if padding_idx is None else [int(padding_idx)]
        super().__init__({"item": num_embeddings}, embedding_dim, padding_rows=padding, sparse_grad=sparse_grad)
        self._linked: tuple[torch.Tensor, ...] = ()
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.padding_idx = None if padding_idx is None else int(padding_idx)
        # nn.Embedding's own init (N(0, 1), PAD row zero), drawing the same random numbers.
        with torch.no_grad():
            torch.nn.init.normal_(self.weight)
            if self.padding_idx is not None:
                self.weight[self.padding_idx].zero_()

    def link(self, *params: torch.Tensor | None) -> None:
        """Item-indexed parameters (row ``i`` belongs to item ``i``) that switch between dense and
        row-sparse with this table: the output bias, an untied output projection. They are held by
        reference, not registered here (they keep their place and name in the model)."""
        self._linked = tuple(p for p in params if p is not None)
        self.set_sparse_grad(self.sparse_grad)

    def set_sparse_grad(self, enabled: bool) -> None:
        super().set_sparse_grad(enabled)
        for p in getattr(self, "_linked", ()):
            # Under torch.distributed the row-wise optimizers gather [rows, D] gradients only, so
            # a [V] vector (the output bias) stays dense there: DDP averages it like any weight.
            setattr(p, ROWWISE_ATTR, bool(enabled) and (p.dim() > 1 or _world_size() == 1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids of any shape ``[...]`` -> ``[..., D]``; the padding row passes no gradient."""
        if self.sparse_grad and takes_row_sparse_grad(self.weight):
            flat = ids.reshape(-1).long()
            return row_sparse_lookup(self.weight, flat, self.frozen).view(*ids.shape, self.embedding_dim)
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}, sparse_grad={self.sparse_grad}"


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def takes_row_sparse_grad(param: torch.Tensor) -> bool:
    """Whether a lookup of ``param`` now should build a row-sparse gradient: it is marked for the
    row-wise optimizer, a gradient is being recorded, and nothing is tracing or compiling."""
    return (bool(getattr(param, ROWWISE_ATTR, False)) and param.requires_grad and torch.is_grad_enabled()
            and not is_tracing())


def gather_item_rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` for an item-indexed ``table`` (``[V, D]`` or ``[V]``) -> ``[*ids.shape, ...]``.

    A table marked for the row-wise optimizer gets a row-sparse gradient (the unique rows of
    ``ids``, summed), read through its optimizer's row reader (rows caught up as dense Adam would
    have them); otherwise this is ``F.embedding(ids, table)`` / ``table[ids]``.
    """
    if not takes_row_sparse_grad(table):
        return F.embedding(ids, table) if table.dim() == 2 else table[ids]
    flat = ids.reshape(-1).long()
    if table.dim() == 2:
        return row_sparse_lookup(table, flat).view(*ids.shape, table.shape[1])
    if table.dim() != 1:
        raise ValueError(f"item tables are [V, D] or [V]; got shape {tuple(table.shape)}")
    # the row reader registry of fused_table (no public getter): see _RowSparseEntries
    reader = fused_table._row_readers.get(table)
    return _RowSparseEntries.apply(table, flat, reader).view(ids.shape)


class _RowSparseEntries(torch.autograd.Function):
    """``vector[ids]`` for a ``[V]`` parameter (a per-item bias) with a row-sparse ``[V]`` gradient:
    the 1-D counterpart of :func:`~trainhub.nn.fused_table.row_sparse_lookup` (which takes
    ``[V, D]`` tables only). With a row reader the entries are read as the reader gives them."""

    @staticmethod
    def forward(ctx, vector: torch.Tensor, ids: torch.Tensor, reader) -> torch.Tensor:
        rows, inverse = torch.unique(ids, sorted=True, return_inverse=True)
        ctx.size = vector.shape
        ctx.save_for_backward(rows, inverse)
        values = reader(vector, rows) if reader is not None else None
        if values is None:
            return vector.index_select(0, ids)
        return values.index_select(0, inverse)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        rows, inverse = ctx.saved_tensors
        values = grad_out.new_zeros(rows.shape[0]).index_add_(0, inverse, grad_out)
        grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, ctx.size, is_coalesced=True,
                                       check_invariants=False)
        return grad, None, None
