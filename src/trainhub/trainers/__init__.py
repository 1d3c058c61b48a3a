"""Torch-RecHub-compatible trainers over the shared engine."""

from trainhub.trainers.base import RecTrainer
from trainhub.trainers.ctr import CTRTrainer
from trainhub.trainers.match import MatchTrainer
from trainhub.trainers.mtl import MTLTrainer
from trainhub.trainers.rqvae import RQVAETrainer
from trainhub.trainers.seq import SeqTrainer

__all__ = ["CTRTrainer", "RecTrainer", "MTLTrainer", "MatchTrainer", "SeqTrainer", "RQVAETrainer"]
