"""Ranking (CTR) models. Each returns logits ``[B]``; the sigmoid and the loss live in the task."""

from trainhub.models.ranking.afm import AFM
from trainhub.models.ranking.autoint import AutoInt
from trainhub.models.ranking.bst import BST
from trainhub.models.ranking.dcn import DCN
from trainhub.models.ranking.dcnv2 import DCNv2
from trainhub.models.ranking.deepffm import DeepFFM, FatDeepFFM
from trainhub.models.ranking.deepfm import DeepFM
from trainhub.models.ranking.dien import DIEN
from trainhub.models.ranking.din import DIN
from trainhub.models.ranking.edcn import EDCN
from trainhub.models.ranking.fibinet import FiBiNet
from trainhub.models.ranking.fm import FM
from trainhub.models.ranking.lr import LR
from trainhub.models.ranking.widedeep import WideDeep

__all__ = ["WideDeep", "DeepFM", "DCN", "DCNv2",
           "EDCN", "AFM", "FiBiNet", "DeepFFM", "FatDeepFFM", "AutoInt", "DIN", "DIEN", "BST", "LR", "FM"]
