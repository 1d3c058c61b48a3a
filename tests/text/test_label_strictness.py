"""Text labels: strict where the config declares an inventory, loud where it is inferred, and
labels seen only in eval data scored as errors instead of becoming classes the head never trains."""

from __future__ import annotations

import logging
import math

import pytest

from trainhub.text import Trainer, load_experiment_config
from trainhub.text.config import HeadConfig, TaskConfig
from trainhub.text.processing import build_label_maps

from .conftest import make_ner_rows, make_sentiment_rows, write_jsonl


def test_inferred_inventory_is_logged_in_full(caplog):
    task = TaskConfig(name="Topics", type="classification", data_path="x", heads=[HeadConfig(name="h")])
    names = [f"topic{i:02d}" for i in range(12)]
    with caplog.at_level(logging.WARNING):
        build_label_maps(task, [{"labels": {"h": n}, "where": f"t.csv, row {i}"} for i, n in enumerate(names)])
    assert "no label inventory in the config; inferred 12 labels" in caplog.text
    assert all(repr(n) in caplog.text for n in names)  # every name, not the first ten


def test_declared_labels_reject_an_eval_label_naming_file_and_row(make_config, tmp_path):
    cfg = make_config(num_epochs=1)
    cfg["tasks"][0]["heads"][0]["labels"] = ["negative", "positive"]
    dev = make_sentiment_rows(6, 2) + [{"text": "hii ni sawa", "label": "neutral"}]
    write_jsonl(tmp_path / "sent_dev.jsonl", dev)
    with pytest.raises(ValueError, match=r"sent_dev.jsonl, row 7: label 'neutral' of task 'Sentiment' head "
                                         r"'sentiment_head' is not in the inventory declared in the config"):
        Trainer.from_config(load_experiment_config(cfg))


def test_declared_ner_inventory_rejects_an_unexpected_conll_tag(make_config, tmp_path):
    cfg = make_config(num_epochs=1)
    conll = tmp_path / "ner_train.conll"
    conll.write_text("amina B-PER\nni O\n\nnairobi B-LOC\nleo B-MISC\n", encoding="utf-8")
    cfg["tasks"][1].update(data_path=str(conll), eval_data_path=None, test_data_path=None, eval_split=0.0)
    cfg["tasks"][1]["heads"][0]["labels"] = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    with pytest.raises(ValueError, match=r"ner_train.conll, row 4: label 'B-MISC' .* is not in the inventory"):
        Trainer.from_config(load_experiment_config(cfg))


def test_eval_only_labels_are_reported_and_scored_as_errors(make_config, tmp_path, caplog):
    cfg = make_config(num_epochs=1)
    del cfg["tasks"][0]["heads"][0]["num_labels"]  # nothing declared: the inventory is inferred from training rows
    sent_dev = make_sentiment_rows(12, 2)
    unseen_sent = [{"text": f"hii ni sawa {w}", "label": "neutral"} for w in ("leo", "sana", "kwa", "na")]
    write_jsonl(tmp_path / "sent_dev.jsonl", sent_dev + unseen_sent)
    ner_dev = make_ner_rows(8, 5)
    ner_dev.append({"text": "amina leo safaricom", "entities": [{"start": 0, "end": 5, "label": "PER"},
                                                               {"start": 10, "end": 19, "label": "ORG"}]})
    write_jsonl(tmp_path / "ner_dev.jsonl", ner_dev)
    with caplog.at_level(logging.WARNING):
        trainer = Trainer.from_config(load_experiment_config(cfg))
    try:
        metrics = trainer.evaluate()
    finally:
        trainer.close()
    sentiment, ner = trainer.config.tasks
    assert sentiment.heads[0].labels == ["negative", "positive"]  # no class the head never trains on
    assert ner.heads[0].labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert "eval/test rows hold labels the training rows never have: 'neutral' (4x, first at" in caplog.text
    assert "'B-ORG' (1x, first at" in caplog.text and "ner_dev.jsonl, row 9" in caplog.text
    # 4 of 16 sentiment rows cannot be right; 1 of 19 gold entities cannot be found
    assert metrics["eval_Sentiment_sentiment_head_accuracy"] <= 12 / 16
    assert metrics["eval_SwahiliNER_ner_head_recall"] <= 18 / 19
    assert math.isfinite(metrics["eval_Sentiment_loss"]) and math.isfinite(metrics["eval_SwahiliNER_loss"])


def test_rows_with_labels_the_head_lacks_count_as_errors_exactly():
    import torch
    import torch.nn.functional as F

    from trainhub.text.objective import MultiTaskObjective

    task = TaskConfig(name="S", type="classification", data_path="x",
                      heads=[HeadConfig(name="h", labels=["neg", "pos"], num_labels=2)])
    seen_labels = []

    def model(input_ids, attention_mask, task_id, labels, token_type_ids):
        logits = torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [0.0, 5.0]])  # right on the two known rows
        seen_labels.append(labels["h"].tolist())
        return {"loss": F.cross_entropy(logits, labels["h"], ignore_index=-100), "logits": {"h": logits}}

    objective = MultiTaskObjective([task], extra_labels={"S": {"h": ["neutral"]}})
    batch = {"input_ids": torch.ones(4, 3, dtype=torch.long), "labels": {"h": torch.tensor([0, 1, 2, 2])}}
    objective.validation_step(model, ("S", batch))
    metrics = objective.compute_metrics()
    assert seen_labels == [[0, 1, -100, -100]]  # the loss never sees an id past the head's classes
    assert metrics["eval_S_h_accuracy"] == 0.5 and metrics["eval_S_h_recall"] == 0.5
    assert metrics["eval_S_loss"] == pytest.approx(float(F.cross_entropy(torch.tensor([[5.0, 0.0], [0.0, 5.0]]),
                                                                         torch.tensor([0, 1]))))
