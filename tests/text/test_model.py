"""The multi-task model: one shared encoder, each task's heads by name or index, labels -> loss,
token embeddings that grow with the tokenizer; base-model names resolved without waiting on the network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainhub.text.config import HeadConfig, ModelConfig, TaskConfig


def _task(type_, heads):
    return TaskConfig(name="t", type=type_, data_path="x", heads=[HeadConfig(**h) for h in heads])


def test_model_forward_by_name_and_index(tiny_model_dir):
    from transformers import AutoModel

    from trainhub.text.model import MultiTaskModel

    tasks = [_task("classification", [{"name": "c", "num_labels": 2}]),
             TaskConfig(name="n", type="ner", data_path="x", heads=[HeadConfig(name="ner_head", num_labels=3)])]
    model = MultiTaskModel(model_config=ModelConfig(), task_configs=tasks,
                           encoder=AutoModel.from_pretrained(str(tiny_model_dir)))
    ids = torch.tensor([[2, 10, 11, 3]])
    by_name = model(ids, torch.ones_like(ids), task_id="n")
    assert by_name["logits"]["ner_head"].shape == (1, 4, 3)
    model.eval()
    assert torch.allclose(model(ids, None, task_id=0)["logits"]["c"], model(ids, None, task_id="t")["logits"]["c"])
    with pytest.raises(KeyError, match="unknown task 'x'"):
        model(ids, task_id="x")


def test_uncached_hub_name_fails_fast_offline(tmp_path, monkeypatch):
    from trainhub.text.model import resolve_base_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not a local directory"):
        resolve_base_model("distilbert-base-uncased")


def test_labels_give_the_weighted_head_loss_and_embeddings_resize(tiny_model_dir):
    from transformers import AutoModel

    from trainhub.text.model import MultiTaskModel

    tasks = [_task("classification", [{"name": "c", "num_labels": 2, "weight": 2.0}])]
    model = MultiTaskModel(model_config=ModelConfig(dropout=0.0), task_configs=tasks,
                           encoder=AutoModel.from_pretrained(str(tiny_model_dir))).eval()
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    out = model(ids, mask, task_id="t", labels={"c": torch.tensor([0, 1])})
    assert torch.allclose(out["loss"], 2.0 * F.cross_entropy(out["logits"]["c"], torch.tensor([0, 1])))
    assert model.task_names == ["t"] and model.task_types == ["single_label_classification"]
    size = model.get_input_embeddings().num_embeddings
    model.resize_token_embeddings(size + 3)
    assert model.get_input_embeddings().num_embeddings == size + 3
    with pytest.raises(IndexError, match="out of range for 1 tasks"):
        model(ids, task_id=1)
