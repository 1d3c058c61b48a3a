"""Embedding tables built from feature specs (fused per width, row-sparse gradients), with input
checks and masked sequence pooling."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from trainhub.features import DenseFeature, SequenceFeature, SparseFeature
from trainhub.nn.fused_table import FusedTable, is_tracing

__all__ = ["EmbeddingCollection", "TableView", "masked_pool", "check_ids", "require", "stack_fields", "concat_fields",
           "concat_parts"]


def require(x: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    """Return ``x[name]`` or raise a KeyError that names the missing feature and what is there."""
    try:
        return x[name]
    except KeyError:
        raise KeyError(
            f"feature {name!r} is missing from the batch; the batch has {sorted(x)[:20]}"
        ) from None


def float_ids_error(name: str, ids: torch.Tensor) -> TypeError:
    """The error for a sparse/sequence feature fed floats, with the fix a script needs."""
    flat = ids.reshape(-1)
    fractional = flat[flat != flat.floor()]
    sample = (fractional if fractional.numel() else flat)[:1].tolist()
    example = f" (e.g. {sample[0]:g})" if sample else ""
    return TypeError(
        f"feature {name!r}: ids must be integers, got {ids.dtype} values{example}. Encode the column to integer "
        f"ids (sklearn LabelEncoder or trainhub.data.CategoricalEncoder), or declare it a DenseFeature if it is a "
        f"number. Torch-RecHub cast such values with .long(), which silently truncates them (every value in "
        f"[0, 1) became id 0)."
    )


def _check_kinds(features: Sequence[object]) -> None:
    """One column is either numbers (DenseFeature) or ids (SparseFeature/SequenceFeature), never both."""
    dense = {f.name for f in features if isinstance(f, DenseFeature)}
    for f in features:
        if isinstance(f, (SparseFeature, SequenceFeature)) and f.name in dense:
            raise ValueError(
                f"feature {f.name!r} is declared both as a DenseFeature and as a {type(f).__name__}; a column is "
                f"either numbers or ids. If it holds numbers (e.g. min-max scaled values), build the "
                f"{type(f).__name__}s from the encoded id columns only; if it holds ids, drop the DenseFeature. "
                f"(Torch-RecHub accepted both and looked the numbers up as truncated ids.)"
            )


def check_ids(name: str, ids: torch.Tensor, vocab_size: int) -> None:
    """Raise a ValueError naming the feature and the bad id when an id is outside ``[0, vocab_size)``.

    Skipped while tracing or exporting (see :func:`trainhub.nn.fused_table.is_tracing`): the check
    reads the ids on the host, which a traced graph cannot do.
    """
    if ids.is_floating_point():
        raise float_ids_error(name, ids)
    if is_tracing() or ids.numel() == 0:
        return
    low, high = torch.aminmax(ids)
    if low < 0 or high >= vocab_size:
        bad = int(low) if low < 0 else int(high)
        raise ValueError(
            f"feature {name!r}: id {bad} is outside [0, vocab_size={vocab_size}); "
            f"encode the column or raise vocab_size"
        )


def masked_pool(emb: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool ``emb [B, L, D]`` over positions where ``mask [B, L]`` is true.

    Mean pooling divides by the number of real items (at least 1, so an all-padding row gives 0).
    """
    mask = mask.unsqueeze(-1).to(emb.dtype)  # [B, L, 1]
    summed = (emb * mask).sum(dim=1)  # [B, D]
    if mode == "sum":
        return summed
    if mode == "mean":
        return summed / mask.sum(dim=1).clamp_min(1.0)
    raise ValueError(f"unknown pooling {mode!r}")


def _block_slice(parts: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """``torch.stack(parts, dim=-2)`` as a view, when ``parts`` are consecutive fields of one lookup
    block (the per-feature views :meth:`EmbeddingCollection.lookup_many` returns), else None."""
    first = parts[0]
    if type(first) is not torch.Tensor or is_tracing():
        return None  # tensor subclasses (graph recorders) and tracers follow ops, not storage
    base = first._base
    if base is None or first.dim() < 1 or base.dim() != 2:
        return None
    width = first.shape[-1]
    if base.shape[1] != width or first.stride(-1) != 1 or first.dim() < 2:
        return None
    row_stride = first.stride(-2)  # k * D: the fields of one row are side by side
    if row_stride % width or any(p._base is not base or p.shape != first.shape or p.stride() != first.stride()
                                 for p in parts):
        return None
    k = row_stride // width
    start = first.storage_offset() - base.storage_offset()
    if start % width or first.storage_offset() < base.storage_offset():
        return None
    i0 = start // width
    offset = first.storage_offset()
    if i0 + len(parts) > k or any(p.storage_offset() != offset + i * width for i, p in enumerate(parts)):
        return None
    lead = first.shape[:-1]
    if base.shape[0] * width != k * width * math.prod(lead):
        return None
    block = base.view(*lead, k, width)
    # a slice that covers the block is left out: its backward would copy the gradient into a zeroed block
    return block if i0 == 0 and len(parts) == k else block[..., i0:i0 + len(parts), :]


def stack_fields(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(parts, dim=-2)`` (``[..., F, D]``) without a copy when the parts are one lookup's
    consecutive fields, so neither the forward nor the backward pass copies the block again."""
    block = _block_slice(parts) if len(parts) > 1 else None
    return block if block is not None else torch.stack(list(parts), dim=-2)


def _flat_pieces(parts: Sequence[torch.Tensor], join_loose: bool) -> list[torch.Tensor]:
    """Each part flattened to ``[B, d]``, with every run of parts that fills a whole lookup block
    taken as one flat view of it; with ``join_loose``, every run of other parts is joined into one
    piece."""
    pieces: list[torch.Tensor] = []
    loose: list[torch.Tensor] = []

    def flush_loose() -> None:
        if len(loose) > 1 and join_loose:
            pieces.append(torch.cat(loose, dim=1))
        else:
            pieces.extend(loose)
        loose.clear()

    i = 0
    while i < len(parts):
        j = i + 1
        if parts[i]._base is not None:
            while j < len(parts) and parts[j]._base is parts[i]._base:
                j += 1
        block = _block_slice(parts[i:j]) if j - i > 1 else None
        if block is not None and block.is_contiguous():
            flush_loose()
            pieces.append(block.flatten(1))
        else:
            loose.extend(p.flatten(1) for p in parts[i:j])
        i = j
    flush_loose()
    return pieces


def concat_parts(parts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The 2-D pieces whose concatenation is :func:`concat_fields`: every run of parts that fills
    a whole lookup block as one flat view of it, and every run of other parts (dense values,
    single fields) joined into one ``[B, d]`` piece. An :class:`~trainhub.nn.MLP` takes the list
    as it is and never builds the whole concatenation."""
    return _flat_pieces(parts, join_loose=True)


def concat_fields(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.cat([p.flatten(1) for p in parts], dim=1)``, taking every run of parts that fills a
    whole lookup block as one flat view: one copy into the result instead of one per field."""
    pieces = _flat_pieces(parts, join_loose=False)
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)


class TableView:
    """One logical table inside a fused weight: ``.weight`` is a view of its rows."""

    def __init__(self, fused: FusedTable, name: str):
        self._fused, self.name = fused, name

    @property
    def weight(self) -> torch.Tensor:
        return self._fused.slice(self.name)

    @property
    def num_embeddings(self) -> int:
        return self._fused.sizes[self.name]

    @property
    def embedding_dim(self) -> int:
        return self._fused.embed_dim

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """Like ``nn.Embedding.__call__``: ``ids [...]`` -> ``[..., D]`` (no range check)."""
        offset = self._fused.offsets[self.name]
        return self._fused(ids.reshape(-1).long() + offset).view(*ids.shape, self.embedding_dim)

    def __repr__(self) -> str:
        return f"TableView({self.name!r}, {self.num_embeddings} x {self.embedding_dim})"


def _group_key(embed_dim: int) -> str:
    return f"d{embed_dim}"


class EmbeddingCollection(nn.Module):
    """Embedding tables for every sparse and sequence feature given, fused per embedding width.

    All tables of one ``embed_dim`` live in one :class:`~trainhub.nn.fused_table.FusedTable`, so
    a call embeds many features with one lookup, and training updates only the rows a batch
    touched (row-sparse gradients; see :mod:`trainhub.optim`). ``tables[name].weight`` is a view
    of one logical table, and ``state_dict()`` keeps one ``tables.<name>.weight`` entry per table.

    Features with ``shared_with`` read the table of the feature they name. Calling the collection
    embeds a subset of the features:

    * ``squeeze_dim=False`` (default): ``[B, F, D]`` for sparse and pooled sequence features (all
      must share one ``embed_dim``); a ``"concat"`` sequence feature must be embedded alone and
      gives ``[B, L, D]``.
    * ``squeeze_dim=True``: ``[B, sum of dims]``, each feature's columns in the order of
      ``features`` (Torch-RecHub's ``EmbeddingLayer`` puts all dense values after the embeddings;
      list dense features last to get its layout).

    Args:
        features: every feature the model may embed (dense ones are accepted and ignored).
        check_inputs: verify ids are in range and name the feature when they are not (skipped while
            tracing or exporting, where an exported graph cannot read ids on the host).
        sparse_grad: row-sparse gradients, for :mod:`trainhub.optim`'s row-wise optimizers. Off by
            default, so a bare model works with any ``torch.optim`` optimizer; the trainers switch
            it on (``sparse_embeddings=True``) when the optimizer has a row-wise form.
    """

    def __init__(self, features: Sequence[object], check_inputs: bool = True, sparse_grad: bool = False):
        super().__init__()
        self.check_inputs = check_inputs
        _check_kinds(features)
        specs: dict[str, SparseFeature | SequenceFeature] = {}
        for f in features:
            if isinstance(f, (SparseFeature, SequenceFeature)) and f.shared_with is None:
                specs.setdefault(f.name, f)
        for f in features:
            if isinstance(f, (SparseFeature, SequenceFeature)) and f.shared_with is not None:
                if f.shared_with not in specs:
                    raise ValueError(
                        f"feature {f.name!r} is shared_with {f.shared_with!r}, which is not in the feature list"
                    )
        by_dim: dict[int, dict[str, SparseFeature | SequenceFeature]] = {}
        for name, f in specs.items():
            by_dim.setdefault(int(f.embed_dim), {})[name] = f
        self.fused = nn.ModuleDict()
        self.tables: dict[str, TableView] = {}
        for dim, group in by_dim.items():
            offsets, total = {}, 0
            for name, f in group.items():
                offsets[name], total = total, total + int(f.vocab_size)
            padding = [offsets[n] + f.padding_idx for n, f in group.items() if f.padding_idx is not None]
            fused = FusedTable({n: f.vocab_size for n, f in group.items()}, dim, padding, sparse_grad=sparse_grad)
            with torch.no_grad():
                for name, f in group.items():
                    rows = fused.slice(name)
                    f.initializer.init_(rows)
                    if f.padding_idx is not None:
                        rows[f.padding_idx].zero_()
            self.fused[_group_key(dim)] = fused
            self.tables.update({name: TableView(fused, name) for name in group})
        self.register_state_dict_post_hook(_split_fused_state)
        self.register_load_state_dict_pre_hook(_join_fused_state)

    # -- lookups ----------------------------------------------------------------------------
    def _table_of(self, feature: SparseFeature | SequenceFeature) -> tuple[FusedTable, int]:
        try:
            view = self.tables[feature.table_name]
        except KeyError:
            raise KeyError(f"feature {feature.name!r} has no table in this collection "
                           f"(tables: {sorted(self.tables)[:20]})") from None
        return view._fused, view._fused.offsets[view.name]

    def _limits(self, features: Sequence[SparseFeature | SequenceFeature], device: torch.device) -> torch.Tensor:
        return torch.tensor([self.tables[f.table_name].num_embeddings for f in features], device=device)

    def _offsets(self, features: Sequence[SparseFeature | SequenceFeature], device: torch.device) -> torch.Tensor:
        return torch.tensor([self._table_of(f)[1] for f in features], device=device)

    def _raise_for_bad_ids(self, pairs: Sequence[tuple[SparseFeature | SequenceFeature, torch.Tensor]]) -> None:
        for f, ids in pairs:
            check_ids(f.name, ids, self.tables[f.table_name].num_embeddings)

    def lookup_many(
        self, pairs: Sequence[tuple[SparseFeature | SequenceFeature, torch.Tensor]]
    ) -> list[torch.Tensor]:
        """Embed several features' ids at once: ``ids [...]`` -> ``[..., D]`` for each pair, in order.

        Features of one table width whose ids share one shape are stacked (``[B, k]``), range-checked
        with one reduction and one host sync, shifted to their global rows and looked up in one go;
        each result is a view into that ``[B, k, D]`` block.
        """
        for f, ids in pairs:
            if ids.is_floating_point():
                raise float_ids_error(f.name, ids)
        # Grouped by a scan, not a dict keyed by shape: under torch.export shapes are symbolic
        # and cannot be hashed.
        blocks: list[tuple[FusedTable, torch.Size, list[int]]] = []
        for i, (f, ids) in enumerate(pairs):
            table = self._table_of(f)[0]
            for block_table, shape, members in blocks:
                if block_table is table and shape == ids.shape:
                    members.append(i)
                    break
            else:
                blocks.append((table, ids.shape, [i]))
        out: list[torch.Tensor | None] = [None] * len(pairs)
        for fused, shape, members in blocks:
            feats = [pairs[i][0] for i in members]
            ids = torch.stack([pairs[i][1] for i in members], dim=-1)  # [..., k], local ids
            if ids.dtype != torch.int64:
                ids = ids.long()
            device = ids.device
            if self.check_inputs and not is_tracing() and ids.numel():  # a host sync: not traceable
                low, high = torch.aminmax(ids.reshape(-1, len(members)), dim=0)  # [k], [k]
                if bool(((low < 0) | (high >= self._limits(feats, device))).any()):
                    self._raise_for_bad_ids([pairs[i] for i in members])
            rows = fused((ids + self._offsets(feats, device)).reshape(-1))  # [N * k, D]
            rows = rows.view(*shape, len(members), fused.embed_dim)  # [..., k, D]
            # unbind, not select: its backward is one stack, not a zero-filled block per feature
            for i, part in zip(members, rows.unbind(-2)):
                out[i] = part
        return out

    def lookup(self, feature: SparseFeature | SequenceFeature, ids: torch.Tensor) -> torch.Tensor:
        """Raw embedding lookup for one feature: ``ids [...]`` -> ``[..., D]``."""
        return self.lookup_many([(feature, ids)])[0]

    @staticmethod
    def _ids_of(feature: object, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        value = require(x, feature.name)
        if isinstance(feature, SequenceFeature):
            if value.dim() != 2:
                raise ValueError(
                    f"sequence feature {feature.name!r} expects ids of shape [B, L], got {tuple(value.shape)}"
                )
            return value
        if value.dim() == 2 and value.shape[1] == 1:
            value = value.squeeze(1)
        if value.dim() != 1:
            raise ValueError(f"sparse feature {feature.name!r} expects ids of shape [B], got {tuple(value.shape)}")
        return value

    @staticmethod
    def _finish(feature: object, ids: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if isinstance(feature, SequenceFeature) and feature.pooling != "concat":
            return masked_pool(emb, ids != feature.pad_id, feature.pooling)
        return emb

    def embed_many(self, features: Sequence[object], x: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`embed_one` for several features, with one table lookup per embedding width."""
        out: list[torch.Tensor | None] = [None] * len(features)
        id_pos, pairs = [], []
        for i, f in enumerate(features):
            if isinstance(f, DenseFeature):
                value = require(x, f.name).float()
                out[i] = value.unsqueeze(-1) if value.dim() == 1 else value
            else:
                id_pos.append(i)
                pairs.append((f, self._ids_of(f, x)))
        for i, (f, ids), emb in zip(id_pos, pairs, self.lookup_many(pairs)):
            out[i] = self._finish(f, ids, emb)
        return out

    def embed_one(self, feature: object, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Embed one feature from the batch: sparse ``[B, D]``, pooled sequence ``[B, D]``,
        concat sequence ``[B, L, D]``, dense ``[B, d]``."""
        return self.embed_many([feature], x)[0]

    def flat_parts(self, x: Mapping[str, torch.Tensor], features: Sequence[object]) -> list[torch.Tensor]:
        """The ``[B, d]`` pieces whose concatenation along dim 1 is ``self(x, features,
        squeeze_dim=True)``. An :class:`~trainhub.nn.MLP` takes the list as its input and skips
        the concatenated copy."""
        return concat_parts(self.embed_many(features, x))

    def forward(
        self, x: Mapping[str, torch.Tensor], features: Sequence[object], squeeze_dim: bool = False
    ) -> torch.Tensor:
        if squeeze_dim:
            return concat_fields(self.embed_many(features, x))  # [B, sum dims]
        id_features = [f for f in features if not isinstance(f, DenseFeature)]
        if len(id_features) != len(features):
            dense = [f.name for f in features if isinstance(f, DenseFeature)]
            raise ValueError(f"dense features {dense} cannot be stacked as fields; use squeeze_dim=True")
        if len(id_features) == 1 and getattr(id_features[0], "pooling", None) == "concat":
            return self.embed_one(id_features[0], x)  # [B, L, D]
        dims = {f.embed_dim for f in id_features}
        if len(dims) > 1:
            raise ValueError(
                "features stacked as fields [B, F, D] must share one embed_dim, got "
                + ", ".join(f"{f.name}={f.embed_dim}" for f in id_features)
            )
        return stack_fields(self.embed_many(id_features, x))  # [B, F, D]


def _split_fused_state(module: EmbeddingCollection, state: dict, prefix: str, local_metadata: dict) -> None:
    """state_dict: one ``tables.<name>.weight`` per logical table instead of the fused weights.

    ``state_dict(keep_vars=True)`` asks for the live parameters (tracers lift them into graph
    inputs), and a table view is not one: that state keeps the fused weight itself.
    """
    for key, fused in module.fused.items():
        if isinstance(state.get(f"{prefix}fused.{key}.weight"), nn.Parameter):
            continue
        state.pop(f"{prefix}fused.{key}.weight", None)
        for name in fused.sizes:
            state[f"{prefix}tables.{name}.weight"] = fused.slice(name).detach()


def _join_fused_state(module: EmbeddingCollection, state: dict, prefix: str, local_metadata: dict, strict: bool,
                      missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
    """load_state_dict: fuse ``tables.<name>.weight`` entries back into the fused weights.

    Each table is copied straight into its slice of the fused weight (no fused-size temporary),
    and the state then names the weight itself, which ``load_state_dict`` copies onto itself.
    """
    for key, fused in module.fused.items():
        names = [f"{prefix}tables.{name}.weight" for name in fused.sizes]
        if f"{prefix}fused.{key}.weight" in state or not all(n in state for n in names):
            continue  # already fused, or incomplete: the standard missing-key report applies
        bad = [(full, tuple(state[full].shape), (size, fused.embed_dim))
               for full, size in zip(names, fused.sizes.values())
               if tuple(state[full].shape) != (size, fused.embed_dim)]
        if bad:
            error_msgs.extend(f"size mismatch for {full}: checkpoint has {got}, the model's table has {want}"
                              for full, got, want in bad)
            continue
        with torch.no_grad():
            for name, full in zip(fused.sizes, names):
                fused.slice(name).copy_(state.pop(full))
        state[f"{prefix}fused.{key}.weight"] = fused.weight.detach()
