"""Ranking (CTR) models. Each returns logits ``[B]``; the sigmoid and the loss live in the task."""

from trainhub.models.ranking.dcn import DCN
from trainhub.models.ranking.dcnv2 import DCNv2
from trainhub.models.ranking.deepfm import DeepFM
from trainhub.models.ranking.widedeep import WideDeep

__all__ = ["WideDeep", "DeepFM", "DCN", "DCNv2"]
