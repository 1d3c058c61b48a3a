"""Matching (retrieval) models. Each exposes ``user_tower`` / ``item_tower`` and returns scores,
never probabilities; see :mod:`trainhub.models.matching.base` for the protocol."""

from trainhub.models.matching.base import MatchModel
from trainhub.models.matching.comirec import ComirecDR, ComirecSA
from trainhub.models.matching.dssm import DSSM
from trainhub.models.matching.facebook_dssm import FaceBookDSSM
from trainhub.models.matching.gru4rec import GRU4Rec
from trainhub.models.matching.mind import MIND
from trainhub.models.matching.narm import NARM
from trainhub.models.matching.sasrec import SASRec
from trainhub.models.matching.sine import SINE
from trainhub.models.matching.stamp import STAMP
from trainhub.models.matching.youtube_dnn import YoutubeDNN
from trainhub.models.matching.youtube_sbc import YoutubeSBC

__all__ = ["MatchModel", "DSSM", "FaceBookDSSM", "YoutubeDNN", "YoutubeSBC", "MIND", "ComirecSA", "ComirecDR",
           "GRU4Rec", "NARM", "SASRec", "STAMP", "SINE"]
