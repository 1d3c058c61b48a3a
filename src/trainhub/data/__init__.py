"""Datasets, loaders, encoders and helpers."""

from trainhub.data.convert import encode_to_parquet, pa_array_to_tensor
from trainhub.data.dataset import DictDataset, PredictDataset, TorchDataset, make_loader
from trainhub.data.encoders import MISSING_ID, OOV_ID, CategoricalEncoder
from trainhub.data.generator import DataGenerator, SeqDataset, SequenceDataGenerator
from trainhub.data.interactions import ItemVocab, encode_histories, read_interactions
from trainhub.data.item_text import encode_item_texts, item_texts_from_frame
from trainhub.data.match import (
    MatchDataGenerator,
    gather_inbatch_logits,
    gen_model_input,
    generate_seq_feature_match,
    inbatch_negative_sampling,
    negative_sample,
)
from trainhub.data.parquet import ParquetIterableDataset, ParquetLoader
from trainhub.data.semantic import EmbDataset, SemanticIDTokenizer, TigerSeqDataset, Trie
from trainhub.data.seqlog import NextItemSamples, SequenceSplits, UserSequences, interaction_sequences
from trainhub.data.sequence import generate_seq_feature
from trainhub.data.utils import array_replace_with_dict, df_to_dict, pad_sequences

__all__ = [
    "CategoricalEncoder",
    "DataGenerator",
    "DictDataset",
    "MISSING_ID",
    "OOV_ID",
    "df_to_dict",
    "make_loader",
    "pad_sequences",
    "generate_seq_feature",
    "MatchDataGenerator",
    "gen_model_input",
    "generate_seq_feature_match",
    "negative_sample",
    "ParquetIterableDataset",
    "ParquetLoader",
    "encode_to_parquet",
    # next-item sequences from an interaction log
    "interaction_sequences",
    "read_interactions",
    "UserSequences",
    "SequenceSplits",
    "NextItemSamples",
    "ItemVocab",
    "encode_histories",
    # Torch-RecHub names (utils.data, utils.match, data.convert)
    "TorchDataset",
    "PredictDataset",
    "SeqDataset",
    "SequenceDataGenerator",
    "array_replace_with_dict",
    "inbatch_negative_sampling",
    "gather_inbatch_logits",
    "pa_array_to_tensor",
    # semantic IDs: RQ-VAE inputs, TIGER sequences (Torch-RecHub utils.data)
    "EmbDataset",
    "TigerSeqDataset",
    "Trie",
    "SemanticIDTokenizer",
    # item text -> item vectors (HLLM, RQ-VAE inputs)
    "encode_item_texts",
    "item_texts_from_frame",
]
