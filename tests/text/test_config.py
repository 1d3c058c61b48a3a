"""Config loading: validation errors name the key; aliases, overrides, defaults."""

from __future__ import annotations

import pytest
import yaml

from trainhub.text.config import (
    ConfigError,
    ExperimentConfig,
    HeadConfig,
    LoggingConfig,
    ModelConfig,
    TaskConfig,
    TokenizerConfig,
    TrainingConfig,
    apply_overrides,
    load_experiment_config,
)

BASE = {
    "project_name": "p",
    "tasks": [{"name": "Sentiment", "type": "classification", "data_path": "s.jsonl",
               "heads": [{"name": "sentiment_head", "num_labels": 2}]}],
}


def _with(**sections) -> dict:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    data.update(sections)
    return data


def test_unknown_key_is_named():
    with pytest.raises(ConfigError) as err:
        load_experiment_config(_with(training={"learnin_rate": 1e-3}))
    assert "training.learnin_rate: unknown key" in str(err.value)


def test_unknown_key_inside_a_task_head_is_named():
    data = _with()
    data["tasks"] = [{**BASE["tasks"][0], "heads": [{"name": "h", "num_label": 2}]}]
    with pytest.raises(ConfigError, match=r"tasks\.0\.heads\.0\.num_label: unknown key"):
        load_experiment_config(data)


def test_wrong_type_is_named_with_value():
    with pytest.raises(ConfigError) as err:
        load_experiment_config(_with(training={"num_epochs": "three"}, tokenizer={"truncation": "maybe"}))
    msg = str(err.value)
    assert "training.num_epochs" in msg and "'three'" in msg
    assert "tokenizer.truncation" in msg


def test_missing_required_and_unknown_task_type():
    with pytest.raises(ConfigError, match="tasks: required key is missing"):
        load_experiment_config({"project_name": "p"})
    data = _with()
    data["tasks"] = [{**BASE["tasks"][0], "type": "clasification"}]
    with pytest.raises(ConfigError, match=r"tasks\.0\.type.*unknown task type 'clasification'"):
        load_experiment_config(data)


def test_classification_alias_and_defaults():
    cfg = load_experiment_config(_with())
    assert cfg.tasks[0].type == "single_label_classification"
    assert cfg.training.metric_for_best_model == "eval_loss"
    assert cfg.training.metric_mode() == "min"
    assert cfg.training.warmup_for(1000) == 100  # documented default
    assert cfg.model.base_model == "all-MiniLM-L6-v2"


def test_yaml_exponent_string_is_read_as_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE) + "training:\n  learning_rate: 2e-5\n", encoding="utf-8")
    assert load_experiment_config(path).training.learning_rate == pytest.approx(2e-5)


def test_greater_is_better_inferred_and_explicit():
    assert TrainingConfig(metric_for_best_model="eval_overall_f1").metric_mode() == "max"
    assert TrainingConfig(metric_for_best_model="eval_R_head_mse").metric_mode() == "min"
    assert TrainingConfig(metric_for_best_model="eval_Glossing_pos_head_accuracy").metric_mode() == "max"
    assert TrainingConfig(metric_for_best_model="eval_loss").metric_mode() == "min"
    assert TrainingConfig(metric_for_best_model="eval_loss", greater_is_better=True).metric_mode() == "max"


def test_warmup_steps_and_ratio_are_exclusive():
    with pytest.raises(ConfigError, match="warmup_steps or warmup_ratio"):
        load_experiment_config(_with(training={"warmup_steps": 10, "warmup_ratio": 0.1}))
    assert TrainingConfig(warmup_ratio=0.1).warmup_for(200) == 20


def test_per_task_batch_size():
    cfg = TrainingConfig(batch_size={"Sentiment": 4, "default": 8})
    assert cfg.batch_size_for("Sentiment") == 4 and cfg.batch_size_for("NER") == 8
    with pytest.raises(ValueError):
        TrainingConfig(batch_size=0)


def test_top_level_logging_is_accepted():
    cfg = load_experiment_config(_with(logging={"service": "both", "experiment_name": "x"}))
    assert cfg.training.logging.services == ["mlflow", "tensorboard"]
    with pytest.raises(ConfigError, match="unknown logging service"):
        load_experiment_config(_with(training={"logging": {"service": "wandb"}}))


def test_overrides_and_relative_paths(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"text": "a", "label": 0}\n', encoding="utf-8")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE), encoding="utf-8")
    cfg = load_experiment_config(path, ["training.num_epochs=1", "tasks.0.max_examples=5", "model.dropout=0.2"])
    assert cfg.training.num_epochs == 1 and cfg.tasks[0].max_examples == 5 and cfg.model.dropout == 0.2
    assert cfg.tasks[0].data_path == str(tmp_path / "s.jsonl")  # resolved against the YAML's folder
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(BASE, ["training.num_epochs"])
    with pytest.raises(ConfigError, match="training.num_epoch: unknown key"):
        load_experiment_config(path, ["training.num_epoch=1"])


def test_upstream_style_construction_and_assignment_validation():
    # Upstream tests build the dataclasses by hand and then mutate them.
    cfg = ExperimentConfig(
        project_name="test_project", model=ModelConfig(base_model="distilbert-base-uncased"),
        tokenizer=TokenizerConfig(max_length=128, padding="max_length", truncation=True),
        tasks=[TaskConfig(name="t", type="ner", data_path="d.jsonl",
                          heads=[HeadConfig(name="ner_head", num_labels=0)])],
        training=TrainingConfig(output_dir="o", num_epochs=1, logging=LoggingConfig(service="tensorboard")),
    )
    cfg.training.logging.service = "mlflow"
    assert cfg.training.logging.services == ["mlflow"]
    with pytest.raises(ValueError):
        cfg.training.num_epochs = "x"


def test_ner_task_takes_one_head_and_unique_names():
    with pytest.raises(ValueError, match="exactly one head"):
        TaskConfig(name="n", type="ner", data_path="x", heads=[HeadConfig(name="a"), HeadConfig(name="b")])
    data = _with()
    data["tasks"] = BASE["tasks"] * 2
    with pytest.raises(ConfigError, match="task names must be unique"):
        load_experiment_config(data)
