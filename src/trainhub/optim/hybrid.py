"""One optimizer object over two kinds of parameters: the user's optimizer for dense weights and a
row-wise optimizer (:mod:`trainhub.optim.rowwise`) for row-sparse embedding tables.

The trainers build it with :func:`build_optimizer`; to the loop, schedulers and checkpoints it is
an ordinary ``torch.optim.Optimizer`` (its ``param_groups`` are the two optimizers' groups, so an
LR scheduler moves both learning rates together).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import torch
from torch import nn

from trainhub.nn.fused_table import ROWWISE_ATTR, FusedTable
from trainhub.optim.rowwise import RowWiseAdagrad, RowWiseAdam, RowWiseSGD, coalesced

__all__ = ["HybridOptimizer", "build_optimizer", "rowwise_rule", "set_sparse_embeddings", "clip_grad_norm_"]

log = logging.getLogger(__name__)


def rowwise_rule(optimizer_fn: Callable, optimizer_params: dict) -> tuple[type, dict] | None:
    """The row-wise counterpart of ``optimizer_fn(**optimizer_params)`` for embedding tables, or None
    when there is none (the tables then stay dense and take the user's optimizer unchanged)."""
    params = dict(optimizer_params)
    common = {k: params[k] for k in ("lr", "weight_decay") if k in params}
    if optimizer_fn in (torch.optim.Adam, torch.optim.AdamW):
        if params.get("amsgrad") or params.get("maximize") or isinstance(params.get("lr"), torch.Tensor):
            return None
        kwargs = dict(common, **{k: params[k] for k in ("betas", "eps") if k in params})
        if optimizer_fn is torch.optim.AdamW:
            kwargs.setdefault("weight_decay", 1e-2)  # AdamW's own default
            kwargs["decoupled_weight_decay"] = True
        elif params.get("decoupled_weight_decay"):
            kwargs["decoupled_weight_decay"] = True
        return RowWiseAdam, kwargs
    if optimizer_fn is torch.optim.Adagrad:
        if params.get("maximize"):
            return None
        keys = ("lr_decay", "initial_accumulator_value", "eps")
        return RowWiseAdagrad, dict(common, **{k: params[k] for k in keys if k in params})
    if optimizer_fn is torch.optim.SGD:
        if params.get("momentum") or params.get("nesterov") or params.get("maximize"):
            return None
        return RowWiseSGD, common
    return None


def set_sparse_embeddings(model: nn.Module, enabled: bool) -> int:
    """Switch every fused embedding table in ``model`` to row-sparse (True) or dense (False)
    gradients; returns how many tables were switched."""
    tables = [m for m in model.modules() if isinstance(m, FusedTable)]
    for table in tables:
        table.set_sparse_grad(enabled)
    return len(tables)


def _split_groups(params: Iterable) -> tuple[list[dict], list[dict]]:
    groups = list(params)
    if not groups or not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    dense, rowwise = [], []
    for group in groups:
        options = {k: v for k, v in group.items() if k != "params"}
        members = list(group["params"])
        sparse = [p for p in members if getattr(p, ROWWISE_ATTR, False)]
        plain = [p for p in members if not getattr(p, ROWWISE_ATTR, False)]
        if plain:
            dense.append({"params": plain, **options})
        if sparse:
            rowwise.append({"params": sparse, **options})
    return dense, rowwise


class HybridOptimizer(torch.optim.Optimizer):
    """Steps a dense optimizer and a row-wise one as one optimizer.

    Args:
        dense: the user's optimizer over dense parameters (or None).
        rowwise: a row-wise optimizer over row-sparse tables (or None).
    """

    def __init__(self, dense: torch.optim.Optimizer | None, rowwise: torch.optim.Optimizer | None):
        self.optimizers = [o for o in (dense, rowwise) if o is not None]
        if not self.optimizers:
            raise ValueError("HybridOptimizer needs at least one optimizer")
        self.dense, self.rowwise = dense, rowwise
        super().__init__([p for o in self.optimizers for g in o.param_groups for p in g["params"]], {})
        self._link_groups()

    def _link_groups(self) -> None:
        # The very dicts of the inner optimizers, so a scheduler's lr change reaches them.
        self.param_groups = [g for o in self.optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for o in self.optimizers:
            o.step()
        return loss

    def flush(self) -> None:
        """Settle the row-wise optimizer's deferred updates (see :meth:`RowWiseAdam.flush`)."""
        if self.rowwise is not None:
            self.rowwise.flush()

    def state_dict(self) -> dict[str, Any]:
        return {"dense": self.dense.state_dict() if self.dense is not None else None,
                "rowwise": self.rowwise.state_dict() if self.rowwise is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"dense", "rowwise"}:
            raise ValueError("this optimizer state was not saved by a HybridOptimizer (keys "
                             f"{sorted(state_dict)}); was the run saved with sparse_embeddings=False?")
        for name, o in (("dense", self.dense), ("rowwise", self.rowwise)):
            if (o is None) != (state_dict[name] is None):
                raise ValueError(f"optimizer state has {'no ' if state_dict[name] is None else ''}{name} part "
                                 f"but this optimizer has {'none' if o is None else 'one'}")
            if o is not None:
                o.load_state_dict(state_dict[name])
        self._link_groups()

    def __repr__(self) -> str:
        return f"HybridOptimizer(dense={self.dense!r}, rowwise={self.rowwise!r})"


def check_optimizer_args(optimizer_fn: Any, optimizer_params: Any) -> None:
    """``optimizer_fn`` is callable (a class such as ``torch.optim.Adam``) and ``optimizer_params``
    a dict; else a TypeError naming the parameter and what it got."""
    if not callable(optimizer_fn):
        hint = ""
        if isinstance(optimizer_fn, str):
            match = next((n for n in dir(torch.optim) if n.lower() == optimizer_fn.lower()), None)
            hint = f" (did you mean torch.optim.{match}?)" if match else ""
        raise TypeError(f"optimizer_fn must be an optimizer class such as torch.optim.Adam (called with the "
                        f"parameters and optimizer_params), got {optimizer_fn!r}{hint}")
    if not isinstance(optimizer_params, dict):
        raise TypeError(f"optimizer_params must be a dict such as {{'lr': 1e-3}}, got {optimizer_params!r}")


def build_optimizer(params: Iterable, optimizer_fn: Callable, optimizer_params: dict) -> torch.optim.Optimizer:
    """``optimizer_fn(params, **optimizer_params)``, except that row-sparse embedding tables among
    ``params`` (parameters or param groups) get the matching row-wise optimizer.

    Without row-sparse tables this returns exactly ``optimizer_fn(params, **optimizer_params)``.
    """
    check_optimizer_args(optimizer_fn, optimizer_params)
    dense_groups, rowwise_groups = _split_groups(params)
    if not rowwise_groups:
        return optimizer_fn(dense_groups if len(dense_groups) > 1 else dense_groups[0]["params"], **optimizer_params)
    rule = rowwise_rule(optimizer_fn, optimizer_params)
    if rule is None:
        raise ValueError(f"{getattr(optimizer_fn, '__name__', optimizer_fn)} with {optimizer_params} has no row-wise "
                         "form for sparse embedding tables; pass sparse_embeddings=False to the trainer")
    cls, kwargs = rule
    allowed = set(kwargs) | {"lr", "weight_decay"}
    rowwise = cls([{"params": g["params"], **{k: v for k, v in g.items() if k in allowed}} for g in rowwise_groups],
                  **kwargs)
    dense = optimizer_fn(dense_groups, **_fused_default(optimizer_fn, optimizer_params, dense_groups)) \
        if dense_groups else None
    return HybridOptimizer(dense, rowwise)


# torch.optim classes whose ``fused=True`` kernel runs on the CPU and on CUDA and takes every
# gradient the for-loop kernel takes (fused SGD and Adagrad refuse sparse gradients, which an
# ``nn.Embedding(sparse=True)`` among the dense parameters would give them).
_FUSED = (torch.optim.Adam, torch.optim.AdamW)


def _fused_default(optimizer_fn: Callable, optimizer_params: dict, groups: list[dict]) -> dict:
    """``optimizer_params`` plus ``fused=True`` when the user chose no implementation and torch has
    a fused kernel for every dense parameter: the same update in one kernel over all tensors
    instead of a dozen small operations per tensor (2-3x cheaper on the CPU for MLP-sized
    weights, equal to the for-loop update up to float rounding)."""
    keys = ("fused", "foreach", "capturable", "differentiable")
    if optimizer_fn not in _FUSED or any(optimizer_params.get(k) for k in keys) \
            or any(k in optimizer_params for k in ("fused", "foreach")):
        return optimizer_params
    supported = ("cpu", "cuda")
    params = [p for g in groups for p in g["params"]]
    if not params or any(p.device.type not in supported or not p.is_floating_point() or p.is_sparse
                         for p in params) or len({p.device for p in params}) > 1:
        return optimizer_params
    return {**optimizer_params, "fused": True}


@torch.no_grad()
def clip_grad_norm_(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (2-norm) that also accepts row-sparse gradients."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.zeros(())
    for p in params:
        if p.grad.is_sparse:
            p.grad = coalesced(p.grad)  # duplicate rows would otherwise count twice in the norm
    tensors = [p.grad._values() if p.grad.is_sparse else p.grad for p in params]
    device = tensors[0].device
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t).to(device) for t in tensors]))
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for t in tensors:
        t.mul_(coef.to(t.device))
    return total
