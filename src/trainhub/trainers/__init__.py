"""Torch-RecHub-compatible trainers over the shared engine."""

from trainhub.trainers.base import RecTrainer
from trainhub.trainers.ctr import CTRTrainer

__all__ = ["CTRTrainer", "RecTrainer"]
