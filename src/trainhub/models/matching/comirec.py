"""ComiRec (Cen et al., 2020): controllable multi-interest retrieval, self-attentive and dynamic-routing."""

from __future__ import annotations

import torch

from trainhub.models.matching.interest import InterestModel, interest_example
from trainhub.models.registry import register_model
from trainhub.nn.multi_interest import CapsuleRouting, SelfAttentiveInterests

__all__ = ["ComirecSA", "ComirecDR"]


@register_model("matching", interest_example)
class ComirecSA(InterestModel):
    """ComiRec-SA: ``K`` self-attention heads over the history give ``K`` interests.

    Args: see :class:`trainhub.models.matching.interest.InterestModel`.

    ``model(x)`` returns list-wise logits ``[B, 1 + K_neg]``; ``"user"`` mode returns ``[B, K, D]``.
    """

    def __init__(self, user_features, history_features, item_features, neg_item_feature, temperature: float = 1.0,
                 interest_num: int = 4):
        super().__init__(user_features, history_features, item_features, neg_item_feature, temperature, interest_num)
        self.attention = SelfAttentiveInterests(self.embed_dim, interest_num)

    def extract(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.attention(seq, mask)


@register_model("matching", lambda: interest_example(max_length=5))
class ComirecDR(InterestModel):
    """ComiRec-DR: dynamic routing with one bilinear map per interest.

    Args:
        max_length: history length ``L``.
        others: see :class:`trainhub.models.matching.interest.InterestModel`.
    """

    def __init__(self, user_features, history_features, item_features, neg_item_feature, max_length,
                 temperature: float = 1.0, interest_num: int = 4):
        super().__init__(user_features, history_features, item_features, neg_item_feature, temperature, interest_num)
        self.max_length = max_length
        self.routing = CapsuleRouting(self.embed_dim, interest_num, max_length, shared_bilinear=False)

    def extract(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.routing(seq, mask)
