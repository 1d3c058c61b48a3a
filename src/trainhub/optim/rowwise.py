"""Optimizers for row-sparse embedding tables: they update only the rows a batch touched.

A fused table (:class:`trainhub.nn.fused_table.FusedTable`) hands its optimizer a coalesced COO
gradient: the unique rows of the batch and their summed gradients. The optimizers here gather
those rows' state, update them with ``index_select`` / ``index_copy_`` / ``index_add_``, and never
touch the rest of the table, so a step costs ``O(rows touched)`` instead of ``O(table)``.
A dense gradient (e.g. when a model also scores against the whole table) takes the same update on
every row, which is then the exact dense rule.

Where the math differs from the dense optimizer of the same name (the "lazy" rules that TorchRec,
FBGEMM and TensorFlow's LazyAdam use):

* :class:`RowWiseAdam`: rows not in the batch keep their moments and do not move (dense Adam would
  decay their moments and keep moving them by the old momentum); L2 ``weight_decay`` (or AdamW's
  decoupled decay) applies to touched rows only; bias correction uses the global step count.
* :class:`RowWiseAdagrad`: identical to dense Adagrad when ``weight_decay == 0`` (an untouched row
  has a zero gradient, so dense Adagrad does not move it either); decay applies to touched rows only.
* :class:`RowWiseSGD` (no momentum): identical to dense SGD when ``weight_decay == 0``.

Under ``torch.distributed`` the row gradients are gathered from every process and averaged, like
DDP averages dense gradients, so every process applies the same update.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

__all__ = ["RowWiseOptimizer", "RowWiseAdam", "RowWiseAdagrad", "RowWiseSGD", "row_grad", "coalesced"]


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_gather_rows(rows: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every process's ``rows [U]`` and ``values [U, D]`` (sizes may differ)."""
    dist = torch.distributed
    world = dist.get_world_size()
    size = torch.tensor([rows.numel()], device=rows.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    longest = max(sizes)
    pad = longest - rows.numel()
    rows_p = torch.cat([rows, rows.new_zeros(pad)])
    values_p = torch.cat([values, values.new_zeros(pad, values.shape[1])])
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
    else:
        t.index_copy_(0, rows, value)


class RowWiseOptimizer(torch.optim.Optimizer):
    """Base: fetch each parameter's row gradient and hand it to :meth:`update_rows`."""

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


class RowWiseAdam(RowWiseOptimizer):
    """Lazy Adam over the rows a batch touched; ``decoupled_weight_decay=True`` gives AdamW."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid RowWiseAdam settings: lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def update_rows(self, p, rows, grad, group, state):
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float64)
            # Both moments of a row side by side: one gather and one scatter per step.
            state["moments"] = torch.zeros(p.shape[0], 2, *p.shape[1:], dtype=p.dtype, device=p.device)
        state["step"] += 1
        step = float(state["step"])
        beta1, beta2 = group["betas"]
        lr, wd, decoupled = group["lr"], group["weight_decay"], group["decoupled_weight_decay"]
        weights = _take(p, rows) if wd else None  # [U, D]
        if wd and not decoupled:
            grad = grad.add(weights, alpha=wd)
        moments = _take(state["moments"], rows)  # [U, 2, D]
        exp_avg, exp_avg_sq = moments.unbind(1)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        _put(state["moments"], rows, moments)
        # torch.optim.Adam's arrangement: m / (sqrt(v) + eps * sqrt(bc2)) * lr * sqrt(bc2) / bc1
        bias_correction2_sqrt = math.sqrt(1 - beta2**step)
        update = exp_avg / exp_avg_sq.sqrt().add_(group["eps"] * bias_correction2_sqrt)
        scale = lr * bias_correction2_sqrt / (1 - beta1**step)
        if wd and decoupled:
            update.mul_(scale).add_(weights, alpha=lr * wd)
            scale = 1.0
        if rows is None:
            p.sub_(update, alpha=scale)
        else:
            p.index_add_(0, rows, update, alpha=-scale)


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
        update = grad / acc.sqrt().add_(group["eps"]) * clr
        if rows is None:
            p.sub_(update)
        else:
            p.index_add_(0, rows, update, alpha=-1.0)


class RowWiseSGD(RowWiseOptimizer):
    """Plain SGD (no momentum) over the rows a batch touched."""

    def __init__(self, params: Iterable, lr: float = 1e-3, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    def update_rows(self, p, rows, grad, group, state):
        if group["weight_decay"]:
            grad = grad.add(_take(p, rows), alpha=group["weight_decay"])
        if rows is None:
            p.sub_(grad, alpha=group["lr"])
        else:
            p.index_add_(0, rows, grad, alpha=-group["lr"])


