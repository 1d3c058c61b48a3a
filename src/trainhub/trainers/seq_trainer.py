"""Torch-RecHub's module path ``torch_rechub.trainers.seq_trainer``."""

from trainhub.trainers.seq import SeqTrainer

__all__ = ["SeqTrainer"]
