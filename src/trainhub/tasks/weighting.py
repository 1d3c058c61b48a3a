"""Loss-weighting strategies for multi-task training, each a small object behind one interface.

A strategy turns the per-task losses ``L = [L_1, ..., L_k]`` (the supervised outputs, in order)
into what the optimizer sees:

* :meth:`LossWeighting.setup` binds it to the model once (strategies that need shared parameters
  read them from the model's ``shared_parameters()`` / ``last_shared_parameters()``).
* :meth:`LossWeighting.combine` gives the scalar objective that is logged (and back-propagated,
  unless the strategy overrides :meth:`LossWeighting.backward`).
* :meth:`LossWeighting.backward` writes gradients; GradNorm and MetaBalance shape per-task
  gradients here.
* :meth:`LossWeighting.parameters` (an ``nn.Module``'s) are the strategy's own learnable
  parameters; :meth:`LossWeighting.optimized_parameters` are the ones the trainer's optimizer
  must update (UWL's log-variances; GradNorm updates its weights itself).
* :meth:`LossWeighting.epoch_logs` reports the current weights for logging.

Under several processes (DistributedDataParallel) GradNorm and MetaBalance average what they
measure per task (losses, per-task gradients) over the ranks before using it, so every rank takes
the same step, equal to one process's step on the combined batch (ranks' batches of equal size,
as the training shards give). Uncertainty weights are synced by the runtime like any parameter
outside the model (``Runtime.setup_optimizer``).

Torch-RecHub's ``adaptive_params={"method": ...}`` maps to a strategy in :func:`build_weighting`.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch
from torch import nn

from trainhub.engine.runtime import all_reduce_mean_, averaged_over_ranks, is_rowwise
from trainhub.output_kinds import output_kinds

__all__ = ["LossWeighting", "EqualWeighting", "UncertaintyWeighting", "GradNorm", "MetaBalance", "build_weighting"]

log = logging.getLogger(__name__)


def _model_parameters(model: nn.Module, method: str, what: str) -> list[nn.Parameter]:
    """Call ``model.<what>()`` or explain which declaration the strategy needs."""
    fn = getattr(model, what, None)
    if fn is None:
        raise TypeError(
            f"{method} needs the model to declare {what}() (see trainhub.models.multitask.MultiTaskRecModel); "
            f"{type(model).__name__} does not"
        )
    params = [p for p in fn() if p.requires_grad]
    if not params:
        raise ValueError(f"{method}: {type(model).__name__}.{what}() returned no trainable parameters")
    return params


def _grads(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
    """``d loss / d p`` for each p; None where the loss does not reach p."""
    return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))


def _values(g: torch.Tensor) -> torch.Tensor:
    """The entries of a gradient (a sparse one's stored values, duplicates summed)."""
    return g.coalesce().values() if g.is_sparse else g


def _norm(g: torch.Tensor | None) -> torch.Tensor:
    return torch.zeros(()) if g is None else _values(g).norm()


def _global_norm(grads: Sequence[torch.Tensor | None], device: torch.device) -> torch.Tensor:
    """L2 norm of all gradients taken together (0 when the loss reaches none of the parameters)."""
    squares = [(_values(g) ** 2).sum() for g in grads if g is not None]
    return torch.sqrt(torch.stack(squares).sum()) if squares else torch.zeros((), device=device)


def _accumulate(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
    """Add ``grads`` to ``p.grad``; a parameter no loss reached keeps ``grad=None`` (optimizers skip it)."""
    for p, g in zip(params, grads):
        if g is not None:
            p.grad = g.detach().clone() if p.grad is None else p.grad + g.detach()


def _dense(grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
    """The dense gradients (sparse ones belong to row-wise tables, which sync themselves)."""
    return [g for g in grads if g is not None and not g.is_sparse]


def _weighted_sum(terms: list[tuple[torch.Tensor | float, torch.Tensor | None]]) -> torch.Tensor | None:
    present = [c * g for c, g in terms if g is not None]
    if not present:
        return None
    total = present[0]
    for g in present[1:]:  # not sum(): 0 + a sparse tensor is not defined
        total = total + g
    return total


class LossWeighting(nn.Module):
    """Interface and the shared plumbing. Subclasses override what differs."""

    method = "base"

    def setup(self, model: nn.Module, task_types: Sequence[str], names: Sequence[str]) -> None:
        """Bind to ``model``; ``task_types``/``names`` describe the supervised losses in order."""
        if len(task_types) != len(names) or not names:
            raise ValueError("setup needs one task type and one name per supervised loss")
        self.task_types, self.names = list(task_types), list(names)
        self.num_losses = len(names)

    def optimized_parameters(self) -> list[nn.Parameter]:
        """Parameters the trainer's optimizer must update."""
        return []

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, losses: torch.Tensor, loss: torch.Tensor, extra: torch.Tensor | float = 0.0) -> None:
        """Write gradients. ``loss = combine(losses) + extra``; ``extra`` is e.g. regularisation."""
        loss.backward()

    def epoch_logs(self) -> dict[str, float]:
        return {}


class EqualWeighting(LossWeighting):
    """Torch-RecHub's default: the mean of the task losses, ``sum(L_i) / k``."""

    method = "equal"

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        return losses.mean()


class UncertaintyWeighting(LossWeighting):
    """Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018) with learned log-variances.

    With ``s_i = log sigma_i^2`` (initialised to 0) the objective is

    * regression: ``0.5 * exp(-s_i) * L_i + 0.5 * s_i`` (Gaussian likelihood),
    * classification: ``exp(-s_i) * L_i + 0.5 * s_i`` (the paper's scaled-softmax approximation),

    summed over tasks. Unlike Torch-RecHub, ``s_i`` is not clamped at 0 (a clamp freezes it once it
    goes negative) and it lives in the strategy, not in the model's ``state_dict``.
    """

    method = "uwl"

    def setup(self, model: nn.Module, task_types: Sequence[str], names: Sequence[str]) -> None:
        super().setup(model, task_types, names)
        device = next(model.parameters()).device
        self.log_vars = nn.Parameter(torch.zeros(self.num_losses, device=device))
        scale = [kind.uncertainty_scale for kind in output_kinds(self.task_types)]
        self.register_buffer("scale", torch.tensor(scale, device=device))

    def optimized_parameters(self) -> list[nn.Parameter]:
        return [self.log_vars]

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        return (self.scale * torch.exp(-self.log_vars) * losses + 0.5 * self.log_vars).sum()

    def epoch_logs(self) -> dict[str, float]:
        weights = (self.scale * torch.exp(-self.log_vars)).detach().cpu().tolist()
        logs = {f"loss_weight/{n}": w for n, w in zip(self.names, weights)}
        logs.update({f"log_var/{n}": float(s) for n, s in zip(self.names, self.log_vars.detach().cpu())})
        return logs


class GradNorm(LossWeighting):
    """GradNorm (Chen et al., ICML 2018): learn task weights ``w_i`` that balance gradient norms.

    Each step, on the last shared layer's weights ``W`` (``model.last_shared_parameters()``):

    * ``G_i = w_i * ||dL_i/dW||``, ``G_bar = mean_i G_i``;
    * ``r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))`` (relative inverse training rate; ``L_i(0)``
      are the losses of the first step);
    * per-task target ``T_i = G_bar * r_i ** alpha`` (held constant);
    * ``w`` descends ``L_grad = sum_i |G_i - T_i|``, i.e. ``dL_grad/dw_i = sign(G_i - T_i) * ||dL_i/dW||``,
      with its own optimizer; then ``w`` is clipped to stay positive and renormalised to sum to ``k``.

    The network receives the gradient of ``sum_i w_i * L_i`` with the weights before the update.

    Args:
        alpha: restoring-force strength (the paper's asymmetry).
        lr: learning rate of the weights' optimizer.
        optimizer_fn: optimizer class for the weights (default Adam).
    """

    method = "gradnorm"

    def __init__(self, alpha: float = 0.16, lr: float = 1e-3, optimizer_fn: Callable = torch.optim.Adam):
        super().__init__()
        self.alpha, self.lr, self.optimizer_fn = float(alpha), float(lr), optimizer_fn

    def setup(self, model: nn.Module, task_types: Sequence[str], names: Sequence[str]) -> None:
        super().setup(model, task_types, names)
        self.shared = _model_parameters(model, "GradNorm", "last_shared_parameters")
        device = self.shared[0].device
        self.loss_weights = nn.Parameter(torch.ones(self.num_losses, device=device))
        self.register_buffer("initial_losses", torch.zeros(self.num_losses, device=device))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool, device=device))
        self.weight_optimizer = self.optimizer_fn([self.loss_weights], lr=self.lr)

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        return (self.loss_weights.detach() * losses).sum()

    def backward(self, losses: torch.Tensor, loss: torch.Tensor, extra: torch.Tensor | float = 0.0) -> None:
        detached = losses.detach().clone()
        n = len(self.shared)
        flat = [g for i in range(self.num_losses) for g in _grads(losses[i], self.shared)]
        # Several processes: the losses and gradients of the combined batch (no-op in one process).
        all_reduce_mean_([detached])
        flat = averaged_over_ranks(flat)
        per_task = [flat[i * n:(i + 1) * n] for i in range(self.num_losses)]
        if not bool(self.started):
            self.initial_losses.copy_(detached.clamp_min(1e-12))
            self.started.fill_(True)
        norms = torch.stack([_global_norm(grads, losses.device) for grads in per_task])  # [k] ||dL_i/dW||
        weights = self.loss_weights.detach()
        grad_norms = weights * norms  # G_i
        ratios = detached / self.initial_losses
        inverse_rates = ratios / ratios.mean()  # r_i
        targets = grad_norms.mean() * inverse_rates.pow(self.alpha)
        weight_grad = torch.sign(grad_norms - targets) * norms

        loss.backward()  # network: d(sum w_i L_i + extra)/d theta with the current weights (DDP averages it)
        self.weight_optimizer.zero_grad(set_to_none=True)
        self.loss_weights.grad = weight_grad.to(self.loss_weights.dtype)
        self.weight_optimizer.step()
        with torch.no_grad():
            self.loss_weights.clamp_(min=1e-4)
            self.loss_weights.mul_(self.num_losses / self.loss_weights.sum())
        self.last_grad_norms, self.last_targets = grad_norms, targets  # for inspection and tests

    def epoch_logs(self) -> dict[str, float]:
        return {f"loss_weight/{n}": float(w) for n, w in zip(self.names, self.loss_weights.detach().cpu())}

    def get_extra_state(self) -> dict:
        # The weights' optimizer state travels with the strategy's state_dict (for resume).
        return {"weight_optimizer": self.weight_optimizer.state_dict()} if hasattr(self, "weight_optimizer") else {}

    def set_extra_state(self, state: dict) -> None:
        if state and hasattr(self, "weight_optimizer"):
            self.weight_optimizer.load_state_dict(state["weight_optimizer"])


class MetaBalance(LossWeighting):
    """MetaBalance (He et al., WWW 2022): scale auxiliary tasks' gradients on shared parameters
    toward the target task's gradient magnitude.

    For every shared parameter tensor ``p`` (``model.shared_parameters()``) and task ``i``, with
    ``g_i = dL_i/dp``, a moving average of the norm ``m_i <- beta * m_i + (1 - beta) * ||g_i||``
    (``m_i`` starts at 0) and the update for auxiliary tasks

        ``g_i <- relax_factor * (m_target / m_i) * g_i + (1 - relax_factor) * g_i``

    (the paper's "adapt both up and down" strategy, per parameter tensor). The shared gradient is
    ``g_target + sum_aux g_i``; task-specific parameters get the plain sum of the task gradients.
    The objective logged is ``sum_i L_i``.

    Args:
        relax_factor: ``r`` in the formula (0: no balancing, 1: full balancing).
        beta: moving-average factor of the gradient norms.
        target_task: index (among the supervised losses) of the target task.
        eps: added to ``m_i`` in the ratio.
    """

    method = "metabalance"

    def __init__(self, relax_factor: float = 0.7, beta: float = 0.9, target_task: int = 0, eps: float = 1e-8):
        super().__init__()
        if not 0.0 <= relax_factor <= 1.0 or not 0.0 <= beta < 1.0:
            raise ValueError(f"MetaBalance needs 0 <= relax_factor <= 1 and 0 <= beta < 1, got {relax_factor}, {beta}")
        self.relax_factor, self.beta, self.target_task, self.eps = float(relax_factor), float(beta), target_task, eps

    def setup(self, model: nn.Module, task_types: Sequence[str], names: Sequence[str]) -> None:
        super().setup(model, task_types, names)
        if not 0 <= self.target_task < self.num_losses:
            raise ValueError(f"MetaBalance target_task {self.target_task} is not among the {self.num_losses} losses")
        self.shared = _model_parameters(model, "MetaBalance", "shared_parameters")
        shared_ids = {id(p) for p in self.shared}
        self.specific = [p for p in model.parameters() if p.requires_grad and id(p) not in shared_ids]
        device = self.shared[0].device
        self.register_buffer("norm_avg", torch.zeros(len(self.shared), self.num_losses, device=device))
        self.register_buffer("last_scale", torch.ones(self.num_losses, device=device))

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        return losses.sum()

    def backward(self, losses: torch.Tensor, loss: torch.Tensor, extra: torch.Tensor | float = 0.0) -> None:
        params = self.shared + self.specific
        n_shared = len(self.shared)
        per_task = [_grads(losses[i], params) for i in range(self.num_losses)]
        # Several processes: every task's gradient over the combined batch (no-op in one process).
        # Nothing here runs backward through DDP, so DDP itself never reduces these gradients. Row-wise
        # tables keep their local gradients (their optimizer averages them); their norms, which
        # set the scales, come from the averaged gradients.
        all_reduce_mean_(_dense([g for grads in per_task for g, p in zip(grads, params) if not is_rowwise(p)]))
        rowwise = [(i, j) for i in range(self.num_losses) for j in range(n_shared)
                   if is_rowwise(params[j]) and per_task[i][j] is not None]
        norm_grads = [list(grads[:n_shared]) for grads in per_task]
        for (i, j), g in zip(rowwise, averaged_over_ranks([per_task[i][j] for i, j in rowwise])):
            norm_grads[i][j] = g
        with torch.no_grad():
            norms = torch.stack([torch.stack([_norm(g).to(self.norm_avg.device) for g in grads])
                                 for grads in norm_grads], dim=1)
            self.norm_avg.mul_(self.beta).add_((1 - self.beta) * norms)  # [P, k]
            target = self.norm_avg[:, self.target_task : self.target_task + 1]  # [P, 1]
            scale = self.relax_factor * target / (self.norm_avg + self.eps) + (1 - self.relax_factor)  # [P, k]
            scale[:, self.target_task] = 1.0
            self.last_scale.copy_(scale.mean(dim=0))
            shared = [_weighted_sum([(scale[j, i], per_task[i][j]) for i in range(self.num_losses)])
                      for j in range(n_shared)]
            specific = [_weighted_sum([(1.0, per_task[i][j]) for i in range(self.num_losses)])
                        for j in range(n_shared, len(params))]
        _accumulate(params, shared + specific)
        if isinstance(extra, torch.Tensor) and extra.requires_grad:
            # The penalty depends on the weights only (equal on every rank): no averaging needed.
            # autograd.grad, not backward(), so DDP's reducer never sees a partial backward.
            _accumulate(params, _grads(extra, params))

    def epoch_logs(self) -> dict[str, float]:
        return {f"metabalance_scale/{n}": float(s) for n, s in zip(self.names, self.last_scale.detach().cpu())}


_METHODS = {"equal": EqualWeighting, "uwl": UncertaintyWeighting, "gradnorm": GradNorm, "metabalance": MetaBalance}


def build_weighting(adaptive_params: dict | None, default_lr: float | None = None) -> LossWeighting:
    """Map Torch-RecHub's ``adaptive_params`` to a strategy.

    ``None`` -> equal weights; ``{"method": "uwl"}``; ``{"method": "metabalance", "relax_factor": 0.7,
    "beta": 0.9}``; ``{"method": "gradnorm", "alpha": 0.16, "lr": ...}`` (``lr`` defaults to
    ``default_lr``, the trainer's learning rate). A :class:`LossWeighting` object passes through.
    """
    if adaptive_params is None:
        return EqualWeighting()
    if isinstance(adaptive_params, LossWeighting):
        return adaptive_params
    params = dict(adaptive_params)
    method = str(params.pop("method", "")).lower()
    if method not in _METHODS:
        raise ValueError(f"adaptive_params method {method!r} is unknown; choose one of {sorted(_METHODS)}")
    if method == "gradnorm" and "lr" not in params and default_lr is not None:
        params["lr"] = default_lr
    try:
        return _METHODS[method](**params)
    except TypeError as err:
        raise ValueError(f"bad adaptive_params for {method!r}: {err}") from None
