"""Fixtures for the text tests: a tiny random BERT + a WordPiece tokenizer trained here, saved as a
local model folder, and small synthetic datasets a model can learn in a few steps."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

SHARED_TEXT = Path(__file__).resolve().parents[3] / "shared" / "data" / "text"
JENGA = SHARED_TEXT / "jenga_ai_samples"
REPO = Path(__file__).resolve().parents[2]

POSITIVE = ["nzuri", "safi", "bora", "great", "good", "happy"]
NEGATIVE = ["mbaya", "feki", "chafu", "bad", "awful", "sad"]
FILLER = ["hii", "ni", "sana", "huduma", "chakula", "leo", "the", "food", "was", "very", "na", "kwa"]
PEOPLE = ["john", "amina", "baraka", "wanjiru"]
PLACES = ["nairobi", "mombasa", "kisumu", "arusha"]


def _corpus() -> list[str]:
    lines = [" ".join(POSITIVE + NEGATIVE + FILLER + PEOPLE + PLACES)]
    for path in sorted(JENGA.glob("*")) if JENGA.is_dir() else []:
        lines.append(path.read_text(encoding="utf-8"))
    lines.append("rais wa kenya ni william ruto jina langu john doe ninaishi kampuni safaricom "
                 "ilitangaza faida kubwa mkutano utafanyika katika jengo la kicc apple inc tim cook ceo")
    return lines


def build_tiny_model_dir(folder: Path, hidden: int = 32, layers: int = 2) -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(_corpus(), trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    fast.save_pretrained(str(folder))
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_sentiment_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["positive", "negative"])
        words = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if label == "positive" else NEGATIVE)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def make_ner_rows(n: int, seed: int = 0) -> list[dict]:
    """Char-span NER rows: '<filler> <person> <filler> <place>' with PER and LOC spans."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        person, place = rng.choice(PEOPLE), rng.choice(PLACES)
        pre, mid = rng.choice(FILLER), rng.choice(FILLER)
        text = f"{pre} {person} {mid} {place}"
        p0 = len(pre) + 1
        l0 = p0 + len(person) + 1 + len(mid) + 1
        rows.append({"text": text, "entities": [{"start": p0, "end": p0 + len(person), "label": "PER"},
                                                {"start": l0, "end": l0 + len(place), "label": "LOC"}]})
    return rows


@pytest.fixture
def make_config(tiny_model_dir, tmp_path):
    """Build a two-task config dict (sentiment + NER) on synthetic files in tmp_path."""

    def factory(n_train: int = 48, **training) -> dict:
        sent = write_jsonl(tmp_path / "sent_train.jsonl", make_sentiment_rows(n_train, 1))
        sent_dev = write_jsonl(tmp_path / "sent_dev.jsonl", make_sentiment_rows(16, 2))
        sent_test = write_jsonl(tmp_path / "sent_test.jsonl", make_sentiment_rows(12, 3))
        ner = write_jsonl(tmp_path / "ner_train.jsonl", make_ner_rows(n_train, 4))
        ner_dev = write_jsonl(tmp_path / "ner_dev.jsonl", make_ner_rows(16, 5))
        ner_test = write_jsonl(tmp_path / "ner_test.jsonl", make_ner_rows(12, 6))
        train_cfg = {"output_dir": str(tmp_path / "out"), "learning_rate": 3e-3, "batch_size": 8, "num_epochs": 2,
                     "warmup_steps": 0, "seed": 0, "device": "cpu", "progress": False}
        train_cfg.update(training)
        return {
            "project_name": "test_text",
            "model": {"base_model": str(tiny_model_dir), "dropout": 0.0},
            "tokenizer": {"max_length": 32},
            "training": train_cfg,
            "tasks": [
                {"name": "Sentiment", "type": "single_label_classification", "data_path": str(sent),
                 "eval_data_path": str(sent_dev), "test_data_path": str(sent_test),
                 "heads": [{"name": "sentiment_head", "num_labels": 2}]},
                {"name": "SwahiliNER", "type": "ner", "data_path": str(ner), "eval_data_path": str(ner_dev),
                 "test_data_path": str(ner_test), "heads": [{"name": "ner_head", "weight": 1.5}]},
            ],
        }

    return factory


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny encoder is faster on one thread (no OpenMP hand-offs); restore afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
