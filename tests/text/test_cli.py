"""`trainhub train CONFIG.yaml key=value` and `python -m multitask_bert --config`, and the
documented multitask_bert import paths."""

from __future__ import annotations

import json

import yaml

from trainhub.cli import main


def test_trainhub_train_with_overrides(make_config, tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(make_config(num_epochs=3)), encoding="utf-8")
    out_dir = tmp_path / "cli_out"
    code = main(["--log-level", "WARNING", "train", str(path), "training.num_epochs=1",
                 f"training.output_dir={out_dir}"])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert "eval_overall_f1" in results["eval"] and "eval_SwahiliNER_ner_head_f1" in results["test"]
    assert results["best_model"] == str(out_dir / "best_model")
    saved = yaml.safe_load((out_dir / "experiment_config.yaml").read_text())
    assert saved["training"]["num_epochs"] == 1
    code = main(["predict", results["best_model"], "--task", "SwahiliNER", "leo amina was nairobi"])
    assert code == 0
    pred = json.loads(capsys.readouterr().out)
    assert isinstance(pred[0]["ner_head"], list)


def test_config_errors_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("tasks: []\ntraining: {epochs: 2}\n", encoding="utf-8")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "training.epochs: unknown key" in err


def test_python_m_multitask_bert(make_config, tmp_path, capsys):
    from multitask_bert.__main__ import main as mb_main

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(make_config(num_epochs=1)), encoding="utf-8")
    assert mb_main(["--config", str(path)]) == 0
    assert "eval_loss" in json.loads(capsys.readouterr().out)["eval"]


def test_documented_import_paths():
    import trainhub.text as text
    from multitask_bert.core.config import ExperimentConfig, HeadConfig, LoggingConfig, TaskConfig  # noqa: F401
    from multitask_bert.core.model import MultiTaskModel
    from multitask_bert.data.data_processing import DataProcessor
    from multitask_bert.deployment.inference import InferenceHandler
    from multitask_bert.tasks.classification import MultiHeadSingleLabelClassificationTask  # noqa: F401
    from multitask_bert.tasks.ner import NERTask  # noqa: F401
    from multitask_bert.training.trainer import Trainer, classification_collate_fn, ner_collate_fn  # noqa: F401
    from multitask_bert.utils.metrics import compute_ner_metrics

    assert Trainer is text.Trainer and MultiTaskModel is text.MultiTaskModel
    assert DataProcessor is text.DataProcessor and InferenceHandler is text.Predictor
    assert compute_ner_metrics.__module__ == "trainhub.text.metrics"
