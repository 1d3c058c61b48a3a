"""MIND (Li et al., 2019): multi-interest network with behaviour-to-interest dynamic routing."""

from __future__ import annotations

import torch

from trainhub.models.matching.interest import InterestModel, interest_example
from trainhub.models.registry import register_model
from trainhub.nn.multi_interest import CapsuleRouting

__all__ = ["MIND"]


@register_model("matching", lambda: interest_example(max_length=5, dynamic_interest=True))
class MIND(InterestModel):
    """MIND.

    Args:
        user_features, history_features, item_features, neg_item_feature, temperature,
            interest_num: see :class:`trainhub.models.matching.interest.InterestModel`.
        max_length: history length ``L`` (padded length of the history feature).
        dynamic_interest: give users with short histories fewer distinct interests,
            ``max(1, min(K, log2(len)))``; the unused slots repeat the first interest, which
            leaves max-over-interest scores unchanged.

    ``model(x)`` returns list-wise logits ``[B, 1 + K_neg]``; ``"user"`` mode returns ``[B, K, D]``.
    """

    def __init__(self, user_features, history_features, item_features, neg_item_feature, max_length,
                 temperature: float = 1.0, interest_num: int = 4, dynamic_interest: bool = False):
        super().__init__(user_features, history_features, item_features, neg_item_feature, temperature, interest_num)
        self.max_length = max_length
        self.dynamic_interest = dynamic_interest
        self.routing = CapsuleRouting(self.embed_dim, interest_num, max_length, shared_bilinear=True)

    def extract(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        interests = self.routing(seq, mask)  # [B, K, D]
        if self.dynamic_interest:
            lengths = mask.sum(dim=1).clamp_min(1).float()
            k_user = torch.log2(lengths).floor().clamp(1, self.interest_num)  # [B]
            unused = torch.arange(self.interest_num, device=seq.device).unsqueeze(0) >= k_user.unsqueeze(1)
            interests = torch.where(unused.unsqueeze(-1), interests[:, :1].expand_as(interests), interests)
        return interests
