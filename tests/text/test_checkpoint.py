"""The text checkpointer: the engine's checkpointer with a reloadable best-model folder."""

from __future__ import annotations

import json

import pytest
import torch

from trainhub.engine.checkpoint import Checkpointer, CheckpointError, CheckpointStore
from trainhub.text.checkpoint import WEIGHTS_NAME, TextCheckpointer
from trainhub.text.config import ExperimentConfig, HeadConfig, ModelConfig, TaskConfig


def _setup(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModel

    from trainhub.text.model import MultiTaskModel

    task = TaskConfig(name="S", type="classification", data_path="x",
                      heads=[HeadConfig(name="h", labels=["neg", "pos"], num_labels=2)])
    config = ExperimentConfig(model=ModelConfig(base_model=str(tiny_model_dir)), tasks=[task])
    model = MultiTaskModel(model_config=config.model, task_configs=config.tasks,
                           encoder=AutoModel.from_pretrained(str(tiny_model_dir)))
    return config, model


def test_best_folder_holds_everything_a_reload_needs(tiny_model_dir, tiny_tokenizer, tmp_path):
    config, model = _setup(tiny_model_dir, tiny_tokenizer)
    ck = TextCheckpointer(tmp_path, config, tiny_tokenizer)
    assert isinstance(ck, Checkpointer) and isinstance(ck, CheckpointStore)
    assert not ck.has_best()
    ck.save_best(model, {"epoch": 0, "monitor": "eval_loss"})
    names = {p.name for p in ck.best_dir.iterdir()}
    assert {WEIGHTS_NAME, "encoder", "experiment_config.yaml", "label_maps.json", "trainer_state.json",
            "tokenizer.json"} <= names
    assert json.loads((ck.best_dir / "label_maps.json").read_text())["S"]["heads"]["h"] == ["neg", "pos"]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ck.save_best(model, {"epoch": 1})  # later saves rewrite the weights and the state only
    assert json.loads((ck.best_dir / "trainer_state.json").read_text()) == {"epoch": 1}
    fresh = _setup(tiny_model_dir, tiny_tokenizer)[1]
    ck.load_best(fresh)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


def test_resume_state_and_a_fresh_start(tiny_model_dir, tiny_tokenizer, tmp_path):
    config, model = _setup(tiny_model_dir, tiny_tokenizer)
    ck = TextCheckpointer(tmp_path, config, tiny_tokenizer)
    assert ck.load_resume() is None
    ck.save_resume({"state": {"epoch": 2}})
    assert ck.load_resume()["state"] == {"epoch": 2}
    ck.final_dir.mkdir()
    assert set(ck.start_fresh()) == {ck.last_path, ck.final_dir}
    assert TextCheckpointer(tmp_path, config, tiny_tokenizer, save_last=False).save_resume({"x": 1}) is None


def test_a_damaged_resume_file_names_the_config_key(tiny_model_dir, tiny_tokenizer, tmp_path):
    config, _ = _setup(tiny_model_dir, tiny_tokenizer)
    ck = TextCheckpointer(tmp_path, config, tiny_tokenizer)
    ck.last_path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="training.resume: false"):
        ck.load_resume()
