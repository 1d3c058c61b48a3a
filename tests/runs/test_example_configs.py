"""Every config in examples/configs runs end to end on tiny data, and its run folder reloads to the
same test scores without the config's objects (only the folder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from trainhub.cli import main
from trainhub.runs import load_dataset, load_run, train_run

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"
REC_CONFIGS = sorted(p.name for p in CONFIGS.glob("*.yaml") if "tasks" not in yaml.safe_load(p.read_text()))
TEXT_CONFIGS = sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name not in REC_CONFIGS)

# Small versions of each named dataset (seconds, not minutes).
TINY = {"synthetic_ctr": "{rows: 1500}", "synthetic_multitask": "{rows: 1500}", "synthetic_sequence": "{rows: 800}",
        "synthetic_matching": "{num_users: 80, num_items: 60, interactions: 8}",
        "synthetic_interactions": "{num_users: 120, num_items: 80, max_events: 15}"}


def test_the_examples_cover_every_trainer():
    models = {yaml.safe_load((CONFIGS / n).read_text())["model"]["name"] for n in REC_CONFIGS}
    assert {"DeepFM", "DIN", "MMOE", "YoutubeDNN", "HSTUModel"} <= models
    assert TEXT_CONFIGS, "a text experiment belongs among the examples"


@pytest.mark.parametrize("name", REC_CONFIGS)
def test_example_config_trains_and_reloads(name, tmp_path):
    raw = yaml.safe_load((CONFIGS / name).read_text())
    dataset = raw["dataset"]["name"]
    result = train_run(CONFIGS / name, [f"output_dir={tmp_path / 'run'}", "trainer.n_epoch=2", "trainer.progress=false",
                                        f"dataset.params={TINY[dataset]}", "trainer.batch_size=64"])
    folder = result.run_dir
    inputs = ("items.json",) if raw["model"]["name"] in ("HSTUModel", "SASRecModel") else ("encoder.json",
                                                                                           "preprocess.json")
    for file in ("run.json", "model.safetensors", "config.yaml", "curves.png", *inputs):
        assert (folder / file).is_file(), file
    assert result.epochs_run >= 1 and result.num_parameters > 0
    test = result.metrics["test"]
    assert all(np.isfinite(v) for v in test.values())

    run = load_run(folder)  # a fresh model from run.json + safetensors
    frames = load_dataset(dataset, **yaml.safe_load(TINY[dataset]))
    if run.kind == "seq":  # next items for every user of the log, never an item of the history
        recs = run.recommend_log(frames["train"], k=5)
        assert len(recs) == frames["train"]["user_id"].nunique() and set(recs["recommended"].map(len)) == {5}
        seen = frames["train"].groupby("user_id")["item_id"].agg(set)
        assert all(not (set(r) & seen[u]) for u, r in zip(recs["user_id"], recs["recommended"]))
        assert 0.0 <= test["hr@10"] <= test["hr@50"] <= 1.0
        return
    scores = run.predict(frames["test"])
    assert len(scores) == len(frames["test"]) and np.isfinite(scores).all()
    if run.kind == "ctr":  # the reloaded model scores the test rows exactly as the trainer did
        assert roc_auc_score(frames["test"]["label"], scores) == pytest.approx(test["auc"], abs=1e-6)
    elif run.kind == "mtl":
        for i, label in enumerate(raw["dataset"]["label"]):
            assert roc_auc_score(frames["test"][label], scores[:, i]) == pytest.approx(test[f"task_{i}_auc"], abs=1e-6)
    else:
        assert {"recall_at_10", "recall_at_50"} <= set(test)
        assert 0.0 <= test["recall_at_10"] <= test["recall_at_50"] <= 1.0
        recs = run.recommend(frames["test"].head(3), k=5)
        assert [len(r) for r in recs] == [5, 5, 5]
        items = json.loads((folder / "embeddings" / "items.json").read_text())["values"]
        assert {v for r in recs for v, _ in r} <= set(items)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.text.conftest import build_tiny_model_dir

    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_bert"))


@pytest.mark.parametrize("name", TEXT_CONFIGS)
def test_text_example_config_runs_through_trainhub_train(name, tiny_model, tmp_path, capsys):
    raw = yaml.safe_load((CONFIGS / name).read_text())
    limits = [f"tasks.{i}.max_examples=24" for i in range(len(raw["tasks"]))]
    code = main(["--log-level", "WARNING", "train", str(CONFIGS / name), f"model.base_model={tiny_model}",
                 "training.num_epochs=1", f"training.output_dir={tmp_path / 'out'}", "training.progress=false",
                 "training.logging.service=none", *limits])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert "eval_overall_f1" in results["eval"] and results["test"]
    assert Path(results["best_model"]).is_dir()
