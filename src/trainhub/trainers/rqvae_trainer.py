"""Torch-RecHub's module path ``torch_rechub.trainers.rqvae_trainer``: ``Trainer`` is
:class:`trainhub.trainers.rqvae.RQVAETrainer`."""

from trainhub.trainers.rqvae import RQVAETrainer
from trainhub.trainers.rqvae import RQVAETrainer as Trainer

__all__ = ["Trainer", "RQVAETrainer"]
