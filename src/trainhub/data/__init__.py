"""Datasets, loaders, encoders and helpers."""

from trainhub.data.convert import encode_to_parquet
from trainhub.data.dataset import DictDataset, make_loader
from trainhub.data.encoders import MISSING_ID, OOV_ID, CategoricalEncoder
from trainhub.data.generator import DataGenerator
from trainhub.data.match import MatchDataGenerator, gen_model_input, generate_seq_feature_match, negative_sample
from trainhub.data.parquet import ParquetIterableDataset, ParquetLoader
from trainhub.data.sequence import generate_seq_feature
from trainhub.data.utils import df_to_dict, pad_sequences

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
]
