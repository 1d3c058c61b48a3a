"""Optimizers for row-sparse embedding tables: they update only the rows a batch touched.

A fused table (:class:`trainhub.nn.fused_table.FusedTable`) hands its optimizer a coalesced COO
gradient: the unique rows of the batch and their summed gradients. The optimizers here gather
those rows' state, update them with ``index_select`` / ``index_copy_``, and never
touch the rest of the table, so a step costs ``O(rows touched)`` instead of ``O(table)``.
A dense gradient (e.g. when a model also scores against the whole table) takes the same update on
every row, which is then the exact dense rule.

Where the math differs from the dense optimizer of the same name:

* :class:`RowWiseAdam`: dense Adam keeps moving a row the batch did not touch (its momentum decays
  and pushes, and weight decay adds a gradient of its own). That motion is deferred and applied in
  closed form when a training lookup next reads the row, at its next update, and for every row at
  :meth:`RowWiseAdam.flush`: exact for the momentum and for AdamW's decay, approximate for L2
  decay and where ``eps`` matters (see the class). ``catch_up=False`` gives the lazy rule of
  TensorFlow's LazyAdam and TorchRec: untouched rows stand still.
* :class:`RowWiseAdagrad`: identical to dense Adagrad when ``weight_decay == 0`` (an untouched row
  has a zero gradient, so dense Adagrad does not move it either); decay applies to touched rows only.
* :class:`RowWiseSGD` (no momentum): identical to dense SGD when ``weight_decay == 0``.

Under ``torch.distributed`` the row gradients are gathered from every process and averaged, like
DDP averages dense gradients, so every process applies the same update.
"""

from __future__ import annotations

import math
import weakref
from typing import Iterable

import torch

from trainhub.nn.fused_table import set_row_reader

__all__ = ["RowWiseOptimizer", "RowWiseAdam", "RowWiseAdagrad", "RowWiseSGD", "row_grad", "coalesced"]


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_gather_rows(rows: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every process's ``rows [U]`` and ``values [U, ...]`` (sizes may differ; 1-D bias rows too)."""
    dist = torch.distributed
    world = dist.get_world_size()
    size = torch.tensor([rows.numel()], device=rows.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    longest = max(sizes)
    pad = longest - rows.numel()
    rows_p = torch.cat([rows, rows.new_zeros(pad)])
    values_p = torch.cat([values, values.new_zeros(pad, *values.shape[1:])])
    all_rows = [torch.empty_like(rows_p) for _ in range(world)]
    all_values = [torch.empty_like(values_p) for _ in range(world)]
    dist.all_gather(all_rows, rows_p)
    dist.all_gather(all_values, values_p)
    return (torch.cat([r[:n] for r, n in zip(all_rows, sizes)]),
            torch.cat([v[:n] for v, n in zip(all_values, sizes)]))


def coalesced(grad: torch.Tensor) -> torch.Tensor:
    """``grad.coalesce()``, skipping the sort when the rows are already unique and ascending.

    A fused table's backward hands out such rows, but autograd drops the "coalesced" flag when it
    stores the gradient; a strictly increasing row index (one cheap comparison) restores it.
    Gradients summed over several backward passes are really uncoalesced and get sorted.
    """
    if grad.is_coalesced():
        return grad
    rows = grad._indices()[0]
    if rows.numel() < 2 or bool((rows[1:] > rows[:-1]).all()):
        return grad._coalesced_(True)
    return grad.coalesce()


def row_grad(p: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(rows, values)`` of ``p.grad``: unique rows and their gradients for a sparse gradient, or
    ``(None, grad)`` for a dense one. Averaged over processes under torch.distributed."""
    grad = p.grad
    world = _world_size()
    if not grad.is_sparse:
        if world > 1:
            grad = grad.clone()
            torch.distributed.all_reduce(grad)
            grad.div_(world)
        return None, grad
    grad = coalesced(grad)
    rows, values = grad._indices()[0], grad._values()
    if world > 1:
        rows, values = _all_gather_rows(rows, values)
        merged = torch.sparse_coo_tensor(rows.unsqueeze(0), values, grad.shape).coalesce()
        rows, values = merged._indices()[0], merged._values().div_(world)
    return rows, values


def _take(t: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    return t if rows is None else t.index_select(0, rows)


def _put(t: torch.Tensor, rows: torch.Tensor | None, value: torch.Tensor) -> None:
    if rows is None:
        if value is not t:
            t.copy_(value)
        return
    row_bytes = t[0].numel() * t.element_size()
    if t.is_contiguous() and value.is_contiguous() and t.dtype == value.dtype and row_bytes % 16 == 0:
        # The same bytes moved as 16-byte elements: index_copy_ costs per element, not per byte.
        t.view(t.shape[0], -1).view(torch.complex128).index_copy_(
            0, rows, value.view(value.shape[0], -1).view(torch.complex128))
    else:
        t.index_copy_(0, rows, value)


def _subtract(p: torch.Tensor, rows: torch.Tensor | None, delta: torch.Tensor,
              current: torch.Tensor | None = None) -> None:
    """``p[rows] -= delta`` for unique ``rows`` (all rows when None). A gather and a copy: on the
    CPU ``index_add_`` (built for repeated rows) costs several times as much."""
    if rows is None:
        p.sub_(delta)
    else:
        p.index_copy_(0, rows, (_take(p, rows) if current is None else current) - delta)


class RowWiseOptimizer(torch.optim.Optimizer):
    """Base: fetch each parameter's row gradient and hand it to :meth:`update_rows`.

    :meth:`flush` settles any work deferred for rows the recent batches did not touch; the
    training loop calls it before it reads the weights (validation, checkpoints, the end).
    """

    def __init__(self, params, defaults: dict):
        super().__init__(params, defaults)
        # A table's training lookups read through the optimizer that updates it now, never through
        # an earlier one still alive elsewhere (RowWiseAdam attaches its own reader after this).
        for group in self.param_groups:
            for p in group["params"]:
                set_row_reader(p, None)

    def flush(self) -> None:
        """Nothing is deferred by default."""

    def update_rows(self, p: torch.Tensor, rows: torch.Tensor | None, grad: torch.Tensor, group: dict,
                    state: dict) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                rows, grad = row_grad(p)
                if rows is not None and rows.numel() == 0:
                    continue
                self.update_rows(p, rows, grad, group, self.state[p])
        return loss


_TABLE_STEPS, _TABLE_TERMS = 4096, 160  # r^160 < 1e-7: later terms of the series do not count
_catch_up_tables: dict[tuple[float, float, str], torch.Tensor] = {}


def _catch_up_table(beta1: float, beta2: float, device: torch.device) -> torch.Tensor:
    """``T[s, m] = sum_{i=1..m} r^i c(s + i)`` for ``s < 4096``, ``m <= 160`` (summed in float64)."""
    key = (beta1, beta2, str(device))
    if key not in _catch_up_tables:
        r = beta1 / math.sqrt(beta2)
        j = torch.arange(1, _TABLE_STEPS + _TABLE_TERMS + 1, dtype=torch.float64)
        c = torch.sqrt(1 - beta2**j) / (1 - beta1**j)  # c[j - 1] = c(j)
        # column by column: a float64 [S, M] intermediate would be ~5 MB per temporary, and
        # the holes they leave in the heap stay in the process's resident memory
        table = torch.zeros(_TABLE_STEPS, _TABLE_TERMS + 1, dtype=torch.float32)
        acc = torch.zeros(_TABLE_STEPS, dtype=torch.float64)
        for i in range(1, _TABLE_TERMS + 1):
            acc.add_(c[i - 1:i - 1 + _TABLE_STEPS], alpha=r**i)  # += r^i c(s + i)
            table[:, i] = acc
        _catch_up_tables[key] = table.to(device=device)
    return _catch_up_tables[key]


def _catch_up_factor(last: torch.Tensor, missed: torch.Tensor, beta1: float, beta2: float,
                     latest: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, for ``k = missed`` steps without gradient since step ``s = last``: the sum
    ``S = sum_{i=1..k} r^i c(s + i)`` (how many "unit" Adam steps the row owes) and the factor
    ``e`` that scales Adam's ``eps`` over those steps (float32 ``[U]`` each; ``S = 0`` when ``k = 0``).

    With no gradient, dense Adam keeps moving a row by ``lr * m_j / bc1_j / (sqrt(v_j / bc2_j) + eps)``
    with ``m_j = b1^i m``, ``v_j = b2^i v``, that is ``lr * m / sqrt(v) * r^i c(j) / (1 + eps
    sqrt(bc2_j) / (b2^(i/2) sqrt(v)))``: a geometric series in ``r = b1 / sqrt(b2)`` times the
    bias-correction factor ``c(j) = sqrt(1 - b2^j) / (1 - b1^j)``, divided by an ``eps`` term that
    changes slowly with ``i``. The row then moves by ``lr * S * m / (sqrt(v) + e * eps)`` with the
    ``eps`` term taken at the series' mean index. Early in training ``c`` changes fast, so ``S`` is
    read from a table; later it is nearly constant over the ~``1 / (1 - r)`` steps that carry the
    series' weight and is taken at the mean index too. ``latest`` (no row's ``last`` is above it)
    lets early steps skip the closed form.
    """
    r = beta1 / math.sqrt(beta2)
    table = _catch_up_table(beta1, beta2, last.device)
    # one flat gather (advanced indexing with two index tensors is several times slower)
    flat = last.clamp(max=_TABLE_STEPS - 1).mul(_TABLE_TERMS + 1).add_(missed.clamp(0, _TABLE_TERMS))
    from_table = table.view(-1).index_select(0, flat)
    k = missed.to(torch.float32)
    # mean index of the weights r^i over i = 1..k: (k + 1) / 2 for short gaps, r / (1 - r) for long ones
    offset = ((k + 1) * 0.5).clamp_(1.0, r / (1 - r))
    j = last.to(torch.float32).add_(offset)
    sqrt_bc2 = torch.exp(j * math.log(beta2)).neg_().add_(1).sqrt_()  # sqrt(1 - b2^j)
    if latest is not None and latest < _TABLE_STEPS:
        factor = from_table  # every row's last step is in the table
    else:
        c = sqrt_bc2 / torch.exp(j * math.log(beta1)).neg_().add_(1)
        r_k = torch.exp(k.clamp(max=_TABLE_TERMS) * math.log(r))
        closed = c.mul_(r_k.neg_().add_(1).mul_(r / (1 - r)))  # c r (1 - r^k) / (1 - r)
        factor = torch.where(last < _TABLE_STEPS, from_table, closed)
    eps_scale = sqrt_bc2.mul_(torch.exp(offset * (-0.5 * math.log(beta2))))
    return factor, eps_scale


_decay_sums: dict[tuple[float, float, str], torch.Tensor] = {}
_DECAY_CHUNK = 65536  # steps per chunk of the prefix sums: beta2^(-chunk / 2) stays far from overflow


def _decay_prefix(beta1: float, beta2: float, upto: int, device: torch.device) -> torch.Tensor:
    """``Q[t] = sum_{tau <= t} c(tau) beta2^((t - tau) / 2)`` for ``t = 0..upto`` (float64), with
    ``c(t) = sqrt(1 - beta2^t) / (1 - beta1^t)``; grown in chunks as training goes on."""
    key = (beta1, beta2, str(device))
    q = _decay_sums.get(key)
    if q is None:
        q = torch.zeros(1, dtype=torch.float64, device=device)
    half = 0.5 * math.log(beta2)
    while q.numel() <= upto:
        start = q.numel()  # first step of the new chunk
        i = torch.arange(1, _DECAY_CHUNK + 1, dtype=torch.float64, device=device)
        t = i + (start - 1)
        c = torch.sqrt(1 - beta2**t) / (1 - beta1**t)
        # Q[start - 1 + i] = beta2^(i/2) (Q[start - 1] + sum_{j <= i} c_j beta2^(-j/2))
        grown = torch.exp(i * half) * (q[-1] + torch.cumsum(c * torch.exp(-i * half), 0))
        q = torch.cat([q, grown])
    _decay_sums[key] = q
    return q


def _l2_decay(denom: torch.Tensor, last: torch.Tensor, missed: torch.Tensor,
              upto: int, momentum_sum: torch.Tensor, group: dict, shape: tuple) -> torch.Tensor:
    """How far ``[U, ...]`` dense Adam's L2 decay moves rows over ``missed`` steps with no
    gradient but ``wd * w`` (to be added to the rows; always towards zero, never past it).

    That gradient is small next to the row's past ones (its square does not change ``v``), so
    the momentum follows ``wd * w`` with a lag and the row shrinks by ``exp(-wd * lr * A / denom)``,
    ``A = sum_{j=1..k} c(s + j) beta2^(-j/2) (1 - beta1^j)``: the series of :func:`_decay_prefix`
    less the momentum's series (``momentum_sum``). When the decay gradient dominates ``v``
    instead (a row with no gradient history), Adam moves a row about ``lr`` per step, so the
    move is capped at ``lr * k``.
    """
    (beta1, beta2), lr, wd = group["betas"], group["lr"], group["weight_decay"]
    q = _decay_prefix(beta1, beta2, upto, last.device)  # rows are brought to step ``upto``
    k = missed.clamp(max=1_000_000)  # beyond that a row has long decayed to zero
    ahead = q.index_select(0, last + k) * torch.exp(k.to(torch.float64) * (-0.5 * math.log(beta2)))
    total = (ahead - q.index_select(0, last)).to(torch.float32).sub_(momentum_sum).clamp_(min=0)
    exponent = torch.div(total.mul_(-wd * lr).view(shape), denom)  # -wd lr A / denom
    if not group["eps"]:
        exponent.nan_to_num_(0.0)  # 0 / 0 for a row with no gradient history and no eps
    return exponent.expm1_(), (lr * missed.to(torch.float32)).view(shape)  # exp(-x) - 1, lr k


def _steps_as_ints(state: dict) -> None:
    # Optimizer.load_state_dict casts state tensors to the parameter's dtype; step numbers are ints.
    if state["last"].dtype != torch.int64:
        state["last"] = state["last"].round().long()


class RowWiseAdam(RowWiseOptimizer):
    """Adam over the rows a batch touched; ``decoupled_weight_decay=True`` gives AdamW.

    A row that a batch does not touch has a zero gradient, and dense Adam still moves it: its
    momentum decays step by step and keeps pushing it, and weight decay pulls it towards zero
    (L2 through Adam's normalised step, AdamW by ``1 - lr * wd`` per step). With ``catch_up=True``
    (the default) that motion is applied in closed form when the row is next read by a training
    lookup (so the forward pass sees the row where dense Adam would have it), at its next update,
    and for every row at :meth:`flush` (the training loop flushes before it validates or saves).
    The momentum and AdamW's decay follow dense Adam up to rounding and ``eps``; L2 decay to a few
    percent of the distance a row travels. ``catch_up=False`` is TensorFlow's LazyAdam: untouched
    rows stand still.
    """

    flush_rows = 65536  # rows caught up at a time by flush()

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
                 catch_up: bool = True):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid RowWiseAdam settings: lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, catch_up=catch_up))
        # Training lookups read rows caught up to the coming step, as dense Adam's forward pass
        # would see them; the step reuses that work when its rows are the lookup's.
        self._read: dict = {}
        self._flushed: dict = {}  # param -> (step, weight version) of its last flush
        self._index_groups()
        reader = _CaughtUpReader(self)
        for group in self.param_groups:
            for p in group["params"]:
                set_row_reader(p, reader if catch_up else None)

    def __setstate__(self, state):
        super().__setstate__(state)
        self._read, self._flushed = {}, {}
        self._index_groups()

    def load_state_dict(self, state_dict):
        self._read.clear()
        self._flushed.clear()
        super().load_state_dict(state_dict)

    def read_rows(self, p: torch.Tensor, rows: torch.Tensor) -> torch.Tensor | None:
        """Unique rows ``p[rows]`` caught up to the coming step (None: nothing deferred to apply).

        Nothing is written: the step (or :meth:`flush`) applies the same motion, reusing this work
        when it can (:meth:`_take_read`)."""
        state = self.state.get(p)
        if not state:
            return None  # no step yet: nothing deferred
        group = self._group_of.get(p)
        if group is None or group["params"] is not self._group_params.get(p):
            self._index_groups()
            group = self._group_of.get(p)
        if group is None or not group["catch_up"] or _world_size() > 1:
            return None  # the lazy rule; or several processes (their rows are merged)
        _steps_as_ints(state)
        step = int(state["step"]) + 1
        exp_avg, exp_avg_sq = (t.contiguous() for t in _take(state["moments"], rows).unbind(1))
        weights = _take(p, rows).contiguous()
        self._catch_up(weights, exp_avg, exp_avg_sq, _take(state["last"], rows), step, group, group["betas"])
        reads = self._read.get(p)
        if not reads or reads[0][2] != step or reads[0][1] != p._version or len(reads) >= 4:
            reads = self._read[p] = []  # only this step's reads of the current weights are kept
        reads.append((rows, p._version, step, weights, exp_avg, exp_avg_sq))
        return weights

    def _index_groups(self) -> None:
        self._group_of = {p: g for g in self.param_groups for p in g["params"]}
        self._group_params = {p: g["params"] for g in self.param_groups for p in g["params"]}

    def _take_read(self, p: torch.Tensor, rows: torch.Tensor | None, step: int) -> list | None:
        """The caught-up rows the lookups of this step read, if together they are the step's rows.

        One lookup hands on its rows tensor, which the gradient keeps; several (two towers over one
        table) are merged in row order when they are disjoint and cover the gradient's rows.
        Anything else (gradient accumulation, rows also read without a lookup) returns None and the
        step catches its rows up itself: the reads wrote nothing, so both give the same values.
        """
        reads = self._read.pop(p, [])
        if not reads or rows is None or any(r[1] != p._version or r[2] != step for r in reads):
            return None
        if len(reads) == 1:
            read_rows, values = reads[0][0], reads[0][3:]
            if (read_rows.data_ptr() == rows.data_ptr() and read_rows.numel() == rows.numel()
                    and read_rows.device == rows.device):
                return list(values)
        if sum(r[0].numel() for r in reads) != rows.numel():
            return None
        # Each read's rows are ascending; reads of features laid out one after another in the
        # table (a user tower's, then an item tower's) need no sort to merge.
        reads.sort(key=lambda r: int(r[0][0]) if r[0].numel() else -1)
        in_order = all(int(a[0][-1]) < int(b[0][0]) for a, b in zip(reads, reads[1:]) if a[0].numel() and b[0].numel())
        merged = torch.cat([r[0] for r in reads])
        order = None if in_order else torch.sort(merged)[1]
        if order is not None:
            merged = merged.index_select(0, order)
        if not torch.equal(merged, rows):
            return None
        values = [torch.cat([r[i] for r in reads]) for i in (3, 4, 5)]
        return values if order is None else [v.index_select(0, order) for v in values]

    @staticmethod
    def _catch_up(weights: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, last: torch.Tensor,
                  step: int, group: dict, extra_decay: tuple[float, float] = (1.0, 1.0)) -> None:
        """Bring rows from their ``last`` step to ``step - 1`` in place: move ``weights [U, ...]`` as
        far as dense Adam would have moved them with zero gradients (and, with weight decay, the
        decay's own gradient), and decay their moments accordingly (times ``extra_decay``, which lets
        the coming step fold its own decay in)."""
        beta1, beta2 = group["betas"]
        lr, wd = group["lr"], group["weight_decay"]
        missed = (step - 1) - last  # steps with no gradient in between (0: none)
        shape = (-1,) + (1,) * (weights.dim() - 1)
        factor, eps_scale = _catch_up_factor(last, missed, beta1, beta2, latest=step - 1)
        denom = exp_avg_sq.sqrt().add_(eps_scale.mul_(group["eps"]).view(shape))
        k = missed.to(torch.float32)
        decay1 = torch.exp(k * math.log(beta1))  # beta1^k, beta2^k per row
        decay2 = torch.exp(k * math.log(beta2))
        l2 = wd and not group["decoupled_weight_decay"]
        if wd and not l2:
            # AdamW shrinks every row by (1 - lr * wd) each step, touched or not: exact in closed form.
            weights.mul_(torch.exp(k * math.log1p(-lr * wd)).view(shape))
        elif l2:
            # L2 decay: an untouched row still has the gradient wd * w, which dense Adam follows.
            decay, cap = _l2_decay(denom, last, missed, step - 1, factor, group, shape)
        weights.addcdiv_(exp_avg * factor.mul(-lr).view(shape), denom)
        exp_avg.mul_(decay1.mul(extra_decay[0]).view(shape))
        exp_avg_sq.mul_(decay2.mul(extra_decay[1]).view(shape))
        if l2:
            weights.add_(decay.mul_(weights).clamp_(min=-cap, max=cap))
            # the moments have followed the decay gradient wd * w meanwhile
            wd_grad = weights * wd
            exp_avg.addcmul_(wd_grad, decay1.neg_().add_(1).mul_(extra_decay[0]).view(shape))
            exp_avg_sq.addcmul_(wd_grad.square_(), decay2.neg_().add_(1).mul_(extra_decay[1]).view(shape))

    def update_rows(self, p, rows, grad, group, state):
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float64)
            # Both moments of a row side by side: one gather and one scatter per step.
            state["moments"] = torch.zeros(p.shape[0], 2, *p.shape[1:], dtype=p.dtype, device=p.device)
            state["last"] = torch.zeros(p.shape[0], dtype=torch.int64, device=p.device)
        state["step"] += 1
        step = int(state["step"])
        beta1, beta2 = group["betas"]
        lr, wd, decoupled = group["lr"], group["weight_decay"], group["decoupled_weight_decay"]
        read = self._take_read(p, rows, step) if group["catch_up"] else None
        if read is not None:
            weights, exp_avg, exp_avg_sq = read  # caught up when the forward pass read them
        else:
            gathered = _take(state["moments"], rows)  # [U, 2, D]
            # contiguous copies: element-wise math (sqrt above all) is several times slower on strided views
            exp_avg, exp_avg_sq = (t.contiguous() for t in gathered.unbind(1))
            weights = _take(p, rows).contiguous()  # [U, D]
        if group["catch_up"]:
            _steps_as_ints(state)
            if read is None:
                # where dense Adam would have the rows by now; the moments also take this step's decay
                self._catch_up(weights, exp_avg, exp_avg_sq, _take(state["last"], rows), step, group,
                               (beta1, beta2))
            if rows is None:
                state["last"].fill_(step)
            else:
                state["last"].index_fill_(0, rows, step)
        else:
            exp_avg.mul_(beta1)
            exp_avg_sq.mul_(beta2)
        if wd and not decoupled:
            grad = grad.add(weights, alpha=wd)
        exp_avg.add_(grad, alpha=1 - beta1)
        exp_avg_sq.addcmul_(grad, grad, value=1 - beta2)
        _put(state["moments"], rows, torch.stack([exp_avg, exp_avg_sq], 1))
        # torch.optim.Adam's arrangement: m / (sqrt(v) + eps * sqrt(bc2)) * lr * sqrt(bc2) / bc1
        bias_correction2_sqrt = math.sqrt(1 - beta2**step)
        denom = exp_avg_sq.sqrt().add_(group["eps"] * bias_correction2_sqrt)
        if wd and decoupled:
            weights.mul_(1 - lr * wd)
        weights.addcdiv_(exp_avg, denom, value=-lr * bias_correction2_sqrt / (1 - beta1**step))
        _put(p, rows, weights)

    @torch.no_grad()
    def flush(self) -> None:
        """Bring every row up to the current step (see the class docstring). A second flush with
        no step (and no change to the weights) in between does nothing."""
        self._read.clear()
        for group in self.param_groups:
            if not group["catch_up"]:
                continue
            for p in group["params"]:
                state = self.state.get(p)
                if not state:
                    continue
                step = int(state["step"])
                if self._flushed.get(p) == (step, p._version):
                    continue
                _steps_as_ints(state)
                # As if a step step+1 came with no gradient for any row: rows owe steps last+1..step.
                # In slices of rows, so the temporaries stay small next to the table.
                for start in range(0, p.shape[0], self.flush_rows):
                    rows = slice(start, start + self.flush_rows)
                    exp_avg, exp_avg_sq = state["moments"][rows].unbind(1)  # views: updated in place
                    self._catch_up(p[rows], exp_avg, exp_avg_sq, state["last"][rows], step + 1, group)
                state["last"].fill_(step)
                self._flushed[p] = (step, p._version)


class _CaughtUpReader:
    """A table's row reader bound weakly to its optimizer (the table must not keep it alive)."""

    def __init__(self, optimizer: RowWiseAdam):
        self.optimizer = weakref.ref(optimizer)

    def __call__(self, weight: torch.Tensor, rows: torch.Tensor) -> torch.Tensor | None:
        optimizer = self.optimizer()
        return None if optimizer is None else optimizer.read_rows(weight, rows)


class RowWiseAdagrad(RowWiseOptimizer):
    """Adagrad over the rows a batch touched (element-wise accumulators, like ``torch.optim.Adagrad``)."""

    def __init__(self, params: Iterable, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps))

    def update_rows(self, p, rows, grad, group, state):
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float64)
            state["sum"] = torch.full_like(p, group["initial_accumulator_value"])
        state["step"] += 1
        clr = group["lr"] / (1 + (float(state["step"]) - 1) * group["lr_decay"])
        if group["weight_decay"]:
            grad = grad.add(_take(p, rows), alpha=group["weight_decay"])
        acc = _take(state["sum"], rows).addcmul_(grad, grad)
        _put(state["sum"], rows, acc)
        _subtract(p, rows, grad / acc.sqrt().add_(group["eps"]) * clr)


class RowWiseSGD(RowWiseOptimizer):
    """Plain SGD (no momentum) over the rows a batch touched."""

    def __init__(self, params: Iterable, lr: float = 1e-3, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    def update_rows(self, p, rows, grad, group, state):
        if group["weight_decay"]:
            grad = grad.add(_take(p, rows), alpha=group["weight_decay"])
        _subtract(p, rows, grad * group["lr"])


