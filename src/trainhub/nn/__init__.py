"""Reusable layers: embeddings built from feature specs, MLPs, interaction layers."""

from trainhub.nn.embedding import EmbeddingCollection, check_ids, masked_pool, require
from trainhub.nn.interaction import FM, LR, CrossNetMix, CrossNetV2, CrossNetwork
from trainhub.nn.mlp import MLP, Dice, activation_layer

__all__ = [
    "EmbeddingCollection",
    "check_ids",
    "masked_pool",
    "require",
    "MLP",
    "Dice",
    "activation_layer",
    "LR",
    "FM",
    "CrossNetwork",
    "CrossNetV2",
    "CrossNetMix",
]
