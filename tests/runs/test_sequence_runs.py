"""Next-item config runs: an interaction log file in, a run folder out that recommends for new
histories (``load_run(...).recommend``, ``trainhub predict``); bad logs are named."""

from __future__ import annotations

import json

import pytest
import yaml

from trainhub.cli import main
from trainhub.data.synthetic import synthetic_interactions
from trainhub.runs import load_run, train_run
from trainhub.runs.config import ConfigError


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seqlog")
    log = synthetic_interactions(num_users=150, num_items=90, max_events=20, seed=1)["train"]
    log.to_csv(folder / "log.tsv", sep="\t", header=False, index=False)  # MovieLens u.data style: no header
    return folder / "log.tsv", log


def _config(path, out, **model):
    return {"output_dir": str(out), "seed": 0, "num_threads": 1,
            "dataset": {"train": str(path), "csv_sep": "\t",
                        "csv_options": {"names": ["user_id", "item_id", "timestamp"]}, "max_seq_len": 20},
            "model": {"name": "SASRecModel", "params": {"d_model": 16, "n_heads": 2, "n_layers": 1, **model}},
            "trainer": {"n_epoch": 2, "batch_size": 32, "progress": False, "topk": [5, 10]},
            "loggers": {"names": ["csv"], "plots": False}}


def test_a_log_file_trains_reloads_and_recommends(log_file, tmp_path, capsys):
    path, log = log_file
    result = train_run(_config(path, tmp_path / "run"))
    run = load_run(result.run_dir)
    assert run.kind == "seq" and run.manifest["rows"]["users"] == log["user_id"].nunique()
    assert {"hr@5", "ndcg@10", "mrr@10"} <= set(result.metrics["test"])
    history = log[log.user_id == 3].sort_values("timestamp")["item_id"].tolist()
    (recs,) = run.recommend([history], k=4)
    assert len(recs) == 4 and not {item for item, _ in recs} & set(history)
    scores = [s for _, s in recs]
    assert scores == sorted(scores, reverse=True)
    # the CLI: a log in, the next items of each of its users out
    named = tmp_path / "users.csv"
    log[log.user_id <= 5].to_csv(named, index=False)
    capsys.readouterr()  # training's output
    assert main(["predict", str(result.run_dir), str(named), "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "user_id,recommended,scores" and len(lines) == 6
    assert len(json.loads(lines[1].split(",", 1)[1].rsplit(",\"", 1)[0].strip('"'))) == 3


def test_bad_logs_and_parameters_are_named(log_file, tmp_path):
    path, log = log_file
    cfg = _config(path, tmp_path / "run")
    cfg["dataset"]["csv_options"] = {"names": ["user_id", "item_id", "time"]}
    with pytest.raises(ConfigError, match=r"timestamp"):
        train_run(cfg)
    with pytest.raises(ConfigError, match=r"model.params.vocab_size: the data gives \d+, the config says 7"):
        train_run(_config(path, tmp_path / "run", vocab_size=7))
    bad = tmp_path / "bad.csv"
    log.assign(timestamp=log["timestamp"].astype(str).where(log.index != 4, "yesterday")).to_csv(bad, index=False)
    cfg = _config(bad, tmp_path / "run")
    cfg["dataset"].pop("csv_sep"), cfg["dataset"].pop("csv_options")
    with pytest.raises(ConfigError, match=r"bad\.csv.*timestamp.*yesterday"):
        train_run(cfg)
    assert not (tmp_path / "run").exists()


def test_cli_trains_the_example_with_hstu(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    cfg = yaml.safe_load(open("examples/configs/hstu_next_item.yaml"))
    path.write_text(yaml.safe_dump(cfg))
    code = main(["train", str(path), f"output_dir={tmp_path / 'out'}", "trainer.n_epoch=1", "trainer.progress=false",
                 "dataset.params={num_users: 60, num_items: 40, max_events: 12}", "model.params.n_layers=1"])
    assert code == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("\n{\n") + 1:])  # the summary follows the training lines
    assert summary["epochs_run"] == 1 and 0 <= summary["test"]["ndcg@10"] <= 1
