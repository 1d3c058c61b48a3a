"""Reusable layers: embeddings built from feature specs, MLPs, interaction layers."""

from trainhub.nn.attention import InteractingLayer, TargetAttention, masked_softmax
from trainhub.nn.embedding import EmbeddingCollection, check_ids, masked_pool, require
from trainhub.nn.ffm import CEN, FFM, FieldAwareEmbedding
from trainhub.nn.hstu import HSTUBlock, HSTULayer
from trainhub.nn.interaction import FM, LR, CrossNetMix, CrossNetV2, CrossNetwork
from trainhub.nn.mlp import MLP, Dice, Dropout, activation_layer
from trainhub.nn.rnn import AUGRU, MaskedGRU
from trainhub.nn.senet import BilinearInteraction, SENETLayer

__all__ = [
    "EmbeddingCollection",
    "check_ids",
    "masked_pool",
    "require",
    "MLP",
    "Dice",
    "Dropout",
    "activation_layer",
    "LR",
    "FM",
    "CrossNetwork",
    "CrossNetV2",
    "CrossNetMix",
    "masked_softmax",
    "TargetAttention",
    "InteractingLayer",
    "FieldAwareEmbedding",
    "FFM",
    "CEN",
    "MaskedGRU",
    "AUGRU",
    "SENETLayer",
    "BilinearInteraction",
    "HSTULayer",
    "HSTUBlock",
]
