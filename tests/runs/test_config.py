"""Run configs: strict validation by dotted path, hints for other tools' keys, text configs told apart."""

from __future__ import annotations

import pytest
import yaml

from trainhub.cli import main
from trainhub.runs.config import ConfigError, config_kind, load_run_config

BASE = {
    "dataset": {"name": "synthetic_ctr", "params": {"rows": 500}},
    "model": {"name": "DeepFM", "params": {"deep_features": ["dense", "sparse"], "fm_features": "sparse",
                                           "mlp_params": {"dims": [8]}}},
    "trainer": {"n_epoch": 1},
}


def test_named_dataset_fills_in_column_roles_and_config_keys_win():
    cfg = load_run_config(BASE)
    assert cfg.dataset.labels == ["label"] and "user_id" in cfg.dataset.sparse_specs
    cfg = load_run_config(BASE, ["dataset.dense=[price]"])
    assert cfg.dataset.dense == ["price"]
    assert cfg.run_name == "DeepFM-synthetic_ctr" and str(cfg.run_dir) == "runs/DeepFM-synthetic_ctr"


def test_shorthands_model_name_and_logger_list():
    cfg = load_run_config({**BASE, "model": "LR", "loggers": ["csv", "mlflow"]})
    assert cfg.model.name == "LR" and cfg.loggers.names == ["csv", "mlflow"]


@pytest.mark.parametrize("override, message", [
    ("trainer.n_epochs=3", "trainer.n_epochs: unknown key; trainhub calls it trainer.n_epoch"),
    ("trainer.n_epoch=zero", "trainer.n_epoch: Input should be a valid integer"),
    ("trainer.batch_size=0", "trainer.batch_size: Input should be greater than or equal to 1"),
    ("dataset.sequence.hist.pooling=max", "dataset.sequence.hist.pooling: Input should be 'mean', 'sum' or 'concat'"),
    ("dataset.split=[0.9,0.5]", "dataset.split: split is [train share, validation share]"),
    ("model.name=DeepFMM", "model.name: unknown model 'DeepFMM'; did you mean DeepFM"),
    ("dataset.name=criteo_full", "dataset.name: unknown dataset 'criteo_full'"),
    ("trainer.mode=2", None),  # family checks happen once the model's family is known (see below)
])
def test_errors_name_the_dotted_path(override, message):
    if message is None:
        load_run_config(BASE, [override])
        return
    with pytest.raises(ConfigError) as err:
        load_run_config(BASE, [override])
    assert message in str(err.value)


def test_dataset_needs_exactly_one_source():
    with pytest.raises(ConfigError, match="give dataset.name .* or dataset.train"):
        load_run_config({**BASE, "dataset": {"name": "synthetic_ctr", "train": "x.csv"}})


def test_fuxictr_style_config_gets_a_mapping_not_a_text_error():
    fuxi = {"DeepFM_test": {"model": "DeepFM", "dataset_id": "tiny"}, "feature_cols": [], "label_col": {"name": "y"},
            "embedding_dim": 10, "epochs": 1, "learning_rate": 1e-3, "hidden_units": [64, 32]}
    with pytest.raises(ConfigError) as err:
        config_kind(fuxi)
    text = str(err.value)
    assert "FuxiCTR" in text and "tasks: required" not in text
    for hint in ("label_col -> dataset.label", "epochs -> trainer.n_epoch", "learning_rate -> trainer.optimizer.lr",
                 "hidden_units -> model.params.mlp_params.dims", "embedding_dim -> dataset.embed_dim"):
        assert hint in text
    assert config_kind({"tasks": []}) == "text" and config_kind(BASE) == "rec"


def test_cli_train_reports_config_errors_with_exit_code_2(tmp_path, capsys):
    path = tmp_path / "fuxi.yaml"
    path.write_text(yaml.safe_dump({"model": "DeepFM", "epochs": 2, "label_col": "clicked"}), encoding="utf-8")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "epochs -> trainer.n_epoch" in err and "label_col -> dataset.label" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE, "trainer": {"n_epoch": 1, "mode": 2}}), encoding="utf-8")
    assert main(["train", str(bad)]) == 2
    assert "mode is a match trainer setting; this run uses the ctr trainer" in capsys.readouterr().err


def test_model_params_are_checked_against_the_constructor(tmp_path, capsys):
    for params, message in [
        ({"deep_features": "dense", "fm_features": "sparse", "mlp_params": {"dims": [4]}, "mlp_dims": [4]},
         "model.params.mlp_dims: DeepFM takes no parameter 'mlp_dims'"),
        ({"deep_features": "dense", "fm_features": "sparse"}, "model.params: DeepFM needs mlp_params"),
        ({"deep_features": ["dense", "C7"], "fm_features": "sparse", "mlp_params": {"dims": [4]}},
         "model.params.deep_features: 'C7' is neither a feature column"),
    ]:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({**BASE, "model": {"name": "DeepFM", "params": params},
                                        "output_dir": str(tmp_path / "r")}), encoding="utf-8")
        assert main(["train", str(path)]) == 2
        assert message in capsys.readouterr().err


def test_version_and_listings(capsys):
    import trainhub

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"trainhub {trainhub.__version__}"
    assert main(["list-models", "--family", "matching"]) == 0
    listed = capsys.readouterr().out
    assert "YoutubeDNN" in listed and "DeepFM" not in listed
    assert main(["list-datasets"]) == 0
    assert "synthetic_ctr" in capsys.readouterr().out


def test_dotted_overrides_reach_into_shorthand_sections():
    cfg = load_run_config({**BASE, "model": "LR", "loggers": ["csv"]}, ["loggers.names=[mlflow]", "model.params={}"])
    assert cfg.loggers.names == ["mlflow"] and cfg.model.name == "LR"
