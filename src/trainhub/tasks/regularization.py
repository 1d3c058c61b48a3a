"""L1/L2 penalties with Torch-RecHub's ``regularization_params`` keys."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Regularization", "add_penalty"]

_NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


class Regularization:
    """``embedding_l1/l2`` apply to embedding tables, ``dense_l1/l2`` to every other weight
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
            target = embedding if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) else dense
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
