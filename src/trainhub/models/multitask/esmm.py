"""ESMM (Ma et al., SIGIR 2018): entire-space multi-task model for post-click conversion.

The CVR and CTR towers read one shared embedding. The model is trained on the CTR and CTCVR labels
only, with ``p(ctcvr) = p(ctr) * p(cvr)``, so the CVR tower learns over the entire impression space
through the CTCVR product.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from trainhub.models import toy
from trainhub.models.multitask.base import MultiTaskRecModel, tower
from trainhub.models.registry import register_model
from trainhub.nn import EmbeddingCollection

__all__ = ["ESMM", "product_logit"]


def _example():
    features = toy.sparse_features()
    kwargs = dict(user_features=features[:1] + features[3:], item_features=features[1:3],
                  cvr_params={"dims": [16, 8]}, ctr_params={"dims": [16, 8]})
    return kwargs, toy.batch()


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(a))`` for ``a < 0``, accurate on both sides of ``-log 2`` (Maechler, 2012)."""
    near_zero = a > -0.6931471805599453
    # Each branch sees only inputs it handles, so the unused one cannot put NaN into the gradient.
    high = torch.log(-torch.expm1(torch.where(near_zero, a, torch.full_like(a, -1.0))))
    low = torch.log1p(-torch.exp(torch.where(near_zero, torch.full_like(a, -1.0), a)))
    return torch.where(near_zero, high, low)


def product_logit(logit_a: torch.Tensor, logit_b: torch.Tensor) -> torch.Tensor:
    """The logit of ``sigmoid(logit_a) * sigmoid(logit_b)``, computed in log space.

    ``log p = logsigmoid(a) + logsigmoid(b)`` never underflows, and ``logit = log p - log(1 - p)``
    keeps the product usable with ``BCEWithLogits``: no probability is ever formed, so the loss
    stays finite even when ``p`` rounds to 0 or 1 in float32.
    """
    log_p = F.logsigmoid(logit_a) + F.logsigmoid(logit_b)
    # log p rounds to 0 only when both logits saturate (beyond ~87); keep log(1 - p) finite there.
    log_p = log_p.clamp(max=-torch.finfo(log_p.dtype).tiny)
    return log_p - _log1mexp(log_p)


@register_model("multitask", _example)
class ESMM(MultiTaskRecModel):
    """ESMM.

    Args:
        user_features: user-side features (any kind).
        item_features: item-side features (any kind).
        cvr_params: MLP keyword arguments of the CVR tower.
        ctr_params: MLP keyword arguments of the CTR tower.

    Returns logits ``[B, 3]`` in the order ``[cvr, ctr, ctcvr]`` (Torch-RecHub's order; labels
    must follow it). The CTCVR column is the logit of ``p_ctr * p_cvr``. Only columns 1 and 2
    (CTR, CTCVR) are supervised (``supervised_outputs``); the CVR column is still evaluated.
    Use ``task_types=["classification"] * 3``.
    """

    supervised_outputs = (1, 2)

    def __init__(self, user_features: Sequence, item_features: Sequence, cvr_params: dict, ctr_params: dict):
        super().__init__()
        self.user_features, self.item_features = list(user_features), list(item_features)
        self.features = self.user_features + self.item_features
        self.task_types = ["classification"] * 3
        self.embedding = EmbeddingCollection(self.features)
        input_dim = sum(f.embed_dim for f in self.features)
        self.tower_cvr = tower(input_dim, cvr_params)
        self.tower_ctr = tower(input_dim, ctr_params)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(x, self.features, squeeze_dim=True)  # [B, sum dims]
        cvr = self.tower_cvr(emb).squeeze(1)  # [B]
        ctr = self.tower_ctr(emb).squeeze(1)  # [B]
        return torch.stack([cvr, ctr, product_logit(ctr, cvr)], dim=1)  # [B, 3]
