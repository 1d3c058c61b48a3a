"""Predictor: a saved folder reloads in one call and answers with label names and entity spans."""

from __future__ import annotations

import pytest
import torch

from trainhub.text.checkpoint import save_model_folder
from trainhub.text.config import ExperimentConfig, HeadConfig, ModelConfig, TaskConfig
from trainhub.text.predict import Predictor, load_predictor


@pytest.fixture
def saved_folder(tiny_model_dir, tiny_tokenizer, tmp_path):
    from transformers import AutoModel

    from trainhub.text.model import MultiTaskModel

    tasks = [TaskConfig(name="S", type="classification", data_path="x",
                        heads=[HeadConfig(name="h", labels=["neg", "pos"], num_labels=2)]),
             TaskConfig(name="N", type="ner", data_path="x",
                        heads=[HeadConfig(name="ner_head", labels=["O", "B-PER", "I-PER"], num_labels=3)]),
             TaskConfig(name="R", type="regression", data_path="x", heads=[HeadConfig(name="r", num_labels=1)])]
    config = ExperimentConfig(model=ModelConfig(base_model=str(tiny_model_dir)), tasks=tasks)
    torch.manual_seed(0)
    model = MultiTaskModel(model_config=config.model, task_configs=tasks,
                           encoder=AutoModel.from_pretrained(str(tiny_model_dir)))
    folder = save_model_folder(tmp_path / "best_model", model, config, tiny_tokenizer)
    return folder, model


def test_reloaded_predictor_gives_the_saved_model_answers(saved_folder):
    folder, model = saved_folder
    predictor = load_predictor(folder)
    assert all(torch.equal(a, b) for a, b in zip(predictor.model.state_dict().values(), model.state_dict().values()))
    one = predictor.predict("huduma nzuri sana", task="S")
    assert one["h"]["label"] in ("neg", "pos") and sum(one["h"]["scores"].values()) == pytest.approx(1.0)
    batch = predictor.predict(["john nairobi", "amina"], task="N", batch_size=1)
    assert len(batch) == 2 and all(isinstance(r["ner_head"], list) for r in batch)
    for spans, text in zip((r["ner_head"] for r in batch), ("john nairobi", "amina")):
        assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)
    assert isinstance(predictor.predict("leo", task="R")["r"]["value"], float)


def test_a_folder_without_weights_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        Predictor.from_pretrained(tmp_path)
