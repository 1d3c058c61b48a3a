"""L1/L2 penalties with Torch-RecHub's ``regularization_params`` keys."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.nn.fused_table import FusedTable

__all__ = ["Regularization", "RegularizationLoss", "add_penalty"]

# trainhub's models keep their tables in FusedTable; hand-written models use nn.Embedding(Bag).
_EMBEDDING_LAYERS = (nn.Embedding, nn.EmbeddingBag, FusedTable)
_NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
                nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.GroupNorm)


class Regularization:
    """``embedding_l1/l2`` apply to embedding tables (``nn.Embedding``, ``nn.EmbeddingBag`` and trainhub's
    fused tables), ``dense_l1/l2`` to every other weight
    except normalisation layers. Returns 0 without touching parameters when all are zero.

    Args:
        params: dict with any of ``embedding_l1``, ``embedding_l2``, ``dense_l1``, ``dense_l2``.
    """

    KEYS = ("embedding_l1", "embedding_l2", "dense_l1", "dense_l2")

    def __init__(self, params: dict | None = None):
        params = dict(params or {})
        unknown = set(params) - set(self.KEYS)
        if unknown:
            raise ValueError(f"unknown regularization_params {sorted(unknown)}; allowed: {list(self.KEYS)}")
        self.coef = {k: float(params.get(k, 0.0)) for k in self.KEYS}
        self.active = any(self.coef.values())

    @staticmethod
    def _split(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        embedding, dense, seen = [], [], set()
        for module in model.modules():
            if isinstance(module, _NORM_LAYERS):
                for p in module.parameters(recurse=False):
                    seen.add(id(p))
                continue
            target = embedding if isinstance(module, _EMBEDDING_LAYERS) else dense
            for p in module.parameters(recurse=False):
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    target.append(p)
        return embedding, dense

    def __call__(self, model: nn.Module) -> torch.Tensor | float:
        if not self.active:
            return 0.0
        embedding, dense = self._split(model)
        c = self.coef
        total = 0.0
        for group, l1, l2 in ((embedding, c["embedding_l1"], c["embedding_l2"]), (dense, c["dense_l1"], c["dense_l2"])):
            for p in group:
                if l1:
                    total = total + l1 * p.abs().sum()
                if l2:
                    total = total + l2 * p.pow(2).sum()
        return total


class RegularizationLoss(nn.Module):
    """Torch-RecHub's ``RegularizationLoss``: ``loss_fn(model)`` is the L1/L2 penalty to add to a loss.

    The same penalty as :class:`Regularization` (which trainers build from ``regularization_params``),
    with Torch-RecHub's constructor: embedding tables (``nn.Embedding`` / ``nn.EmbeddingBag``) take
    ``embedding_l1/l2``, every other trainable parameter except normalisation layers ``dense_l1/l2``.

    Example:
        >>> reg_loss_fn = RegularizationLoss(embedding_l2=1e-5, dense_l2=1e-5)
        >>> total_loss = task_loss + reg_loss_fn(model)
    """

    def __init__(self, embedding_l1: float = 0.0, embedding_l2: float = 0.0, dense_l1: float = 0.0,
                 dense_l2: float = 0.0):
        super().__init__()
        self.embedding_l1, self.embedding_l2 = embedding_l1, embedding_l2
        self.dense_l1, self.dense_l2 = dense_l1, dense_l2
        self.penalty = Regularization({"embedding_l1": embedding_l1, "embedding_l2": embedding_l2,
                                       "dense_l1": dense_l1, "dense_l2": dense_l2})

    def forward(self, model: nn.Module) -> torch.Tensor | float:
        """The penalty of ``model``'s parameters (``0.0`` when every coefficient is zero)."""
        return self.penalty(model)


def add_penalty(
    loss: torch.Tensor, model: nn.Module, regularization, parts: dict
) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Add ``regularization(model)`` (when given and non-zero) to ``loss`` and log it in ``parts``
    as ``reg_loss``. Returns ``(loss, penalty)``."""
    penalty = regularization(model) if regularization is not None else 0.0
    if isinstance(penalty, torch.Tensor):
        parts["reg_loss"] = penalty
        loss = loss + penalty
    return loss, penalty
