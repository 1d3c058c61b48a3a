"""Runs from files: the run folder reloads without the script, scores new rows (unseen ids -> OOV),
names missing columns, and MLflow receives params, test metrics, artifacts and a run name."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from trainhub.cli import main
from trainhub.data.synthetic import synthetic_ctr, synthetic_matching
from trainhub.runs import load_run, train_run


@pytest.fixture(scope="module")
def ctr_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ctr_files")
    frames = synthetic_ctr(rows=1200, seed=3)
    frames["train"].to_csv(folder / "train.csv", index=False)
    frames["val"].to_parquet(folder / "val.parquet")
    frames["test"].to_parquet(folder / "test.parquet")
    return folder, frames


def _config(folder, out, **extra):
    return {
        "name": "wide_deep_files", "output_dir": str(out), "seed": 1,
        "dataset": {"train": str(folder / "train.csv"), "val": str(folder / "val.parquet"),
                    "test": str(folder / "test.parquet"), "label": "label",
                    "sparse": {"user_id": None, "item_id": {"embed_dim": 4}, "cate_id": None},
                    "dense": ["price", "age"], "embed_dim": 8, "groups": {"wide": ["cate_id", "price"]}},
        "model": {"name": "WideDeep", "params": {"wide_features": "wide", "deep_features": "all",
                                                  "mlp_params": {"dims": [8]}}},
        "trainer": {"n_epoch": 2, "batch_size": 128, "progress": False},
        **extra,
    }


@pytest.fixture(scope="module")
def ctr_run(ctr_files, tmp_path_factory):
    folder, frames = ctr_files
    out = tmp_path_factory.mktemp("run") / "wd"
    cfg = _config(folder, out, loggers={"names": ["csv", "mlflow"], "experiment_name": "files"})
    return train_run(cfg), frames


def test_reloaded_run_scores_like_the_trained_model(ctr_run):
    from sklearn.metrics import roc_auc_score

    result, frames = ctr_run
    run = load_run(result.run_dir)
    assert run.kind == "ctr" and run.manifest["model"]["name"] == "WideDeep"
    assert run.features["item_id"].embed_dim == 4 and run.features["user_id"].embed_dim == 8
    probs = run.predict(frames["test"])
    assert ((probs > 0) & (probs < 1)).all()
    assert roc_auc_score(frames["test"]["label"], probs) == pytest.approx(result.metrics["test"]["auc"], abs=1e-6)
    # nothing in the folder needs unpickling: weights are safetensors, the rest JSON/YAML
    assert {p.suffix for p in result.run_dir.glob("*") if p.is_file()} <= {".json", ".safetensors", ".yaml",
                                                                            ".png", ".pth", ".ckpt"}


def test_unseen_ids_map_to_oov_and_missing_columns_are_named(ctr_run, tmp_path):
    result, frames = ctr_run
    run = load_run(result.run_dir)
    rows = frames["test"].head(4).copy()
    unseen = rows.assign(user_id=["never-seen"] * 4, item_id=["nope"] * 4)
    x = run.preprocessor.transform(unseen)
    assert (x["user_id"] == 1).all() and (x["item_id"] == 1).all()  # the OOV id
    assert np.isfinite(run.predict(unseen)).all()
    with pytest.raises(KeyError, match="column 'price' .*dataset.dense.* is not in"):
        run.predict(rows.drop(columns="price"))


def test_cli_predict_writes_scores_for_a_parquet_file(ctr_run, tmp_path, capsys):
    result, frames = ctr_run
    data = tmp_path / "new.parquet"
    frames["test"].drop(columns=["label", "oracle_prob"]).head(7).to_parquet(data)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(result.run_dir), str(data), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 7
    pred = pd.read_csv(out)
    assert len(pred) == 7 and "prediction" in pred
    assert pred["prediction"].to_numpy() == pytest.approx(load_run(result.run_dir).predict(data), abs=1e-6)
    assert main(["predict", str(tmp_path), str(data)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_mlflow_gets_params_test_metrics_artifacts_and_run_name(ctr_run):
    from mlflow.tracking import MlflowClient

    result, _ = ctr_run
    client = MlflowClient(f"sqlite:///{result.run_dir / 'logs' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("files").experiment_id])
    assert run.info.run_name == "wide_deep_files"
    params = run.data.params
    for key in ("batch_size", "seed", "num_parameters", "embedding.item_id.dim", "mlp.mlp.dims",
                "config.model.params.mlp_params.dims", "rows.train"):
        assert key in params, key
    assert params["batch_size"] == "128" and params["embedding.item_id.dim"] == "4"
    assert run.data.metrics["test/auc"] == pytest.approx(result.metrics["test"]["auc"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "run.json", "model.safetensors", "encoder.json", "curves.png"} <= artifacts
    # validation and epoch metrics sit on the optimizer-step axis
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/auc")]
    epochs = client.get_metric_history(run.info.run_id, "epoch")
    assert steps == [e.step for e in epochs] and [e.value for e in epochs] == [1, 2] and steps[0] == 8  # 960 rows / 128


def test_csv_with_split_and_sequences_from_strings(tmp_path):
    frames = synthetic_matching(num_users=40, num_items=30, interactions=6, seed=2)
    data = pd.concat(frames.values(), ignore_index=True)
    data.to_csv(tmp_path / "all.csv", index=False)
    cfg = {
        "output_dir": str(tmp_path / "dssm"),
        "dataset": {"train": str(tmp_path / "all.csv"), "split": [0.7, 0.15],
                    "sparse": ["user_id", "age_group", "item_id", "cate_id"],
                    "sequence": {"hist_item_id": {"vocab": "item_id", "max_len": 4}},
                    "groups": {"user": ["age_group", "hist_item_id"], "item": ["item_id", "cate_id"]},
                    "user_id": "user_id", "item_id": "item_id", "item_columns": ["item_id", "cate_id"]},
        "model": {"name": "DSSM", "params": {"user_features": "user", "item_features": "item",
                                              "user_params": {"dims": [8]}, "item_params": {"dims": [8]},
                                              "temperature": 0.1}},
        "trainer": {"n_epoch": 1, "batch_size": 32, "in_batch_neg": True, "topk": [5], "progress": False},
    }
    result = train_run(cfg)
    run = load_run(result.run_dir)
    assert run.features["hist_item_id"].shared_with == "item_id"
    users = json.loads((result.run_dir / "embeddings" / "users.json").read_text())["values"]
    assert sorted(users) == sorted(data["user_id"].unique())
    from safetensors.torch import load_file

    emb = load_file(str(result.run_dir / "embeddings" / "users.safetensors"))["embeddings"]
    assert emb.shape == (len(users), 8)
    scores = run.predict(data.head(5))  # user-item scores of the rows' own items
    assert scores.shape == (5,) and np.isfinite(scores).all()
    assert main(["export", str(result.run_dir), "--items", str(tmp_path / "all.csv"),
                 "--out", str(tmp_path / "emb")]) == 0
    assert (tmp_path / "emb" / "index" / "meta.json").is_file()
    cfg_path = tmp_path / "ctr_on_match.yaml"
    cfg_path.write_text(yaml.safe_dump({**cfg, "model": {"name": "DeepFM"}}), encoding="utf-8")
    assert main(["train", str(cfg_path)]) == 2  # in_batch_neg is a matching setting
