"""Config runs write their folder once, whole: logs survive, a failed run leaves an earlier run's
folder exactly as it was, files of one dataset must agree, labels are checked before training,
and a run killed with SIGKILL resumes to the same weights and metrics as an uninterrupted one."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from trainhub.data.synthetic import synthetic_ctr
from trainhub.runs import load_run, train_run
from trainhub.runs.config import ConfigError
from trainhub.runs.staging import RunStaging


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("staging_files")
    frames = synthetic_ctr(rows=900, seed=5)
    for part in ("train", "val", "test"):
        frames[part].drop(columns=["oracle_prob"]).to_csv(folder / f"{part}.csv", index=False)
    return folder, frames


def _config(folder: Path, out: Path, **trainer) -> dict:
    return {
        "name": "staging", "output_dir": str(out), "seed": 3, "num_threads": 1,
        "dataset": {"train": str(folder / "train.csv"), "val": str(folder / "val.csv"),
                    "test": str(folder / "test.csv"), "label": "label",
                    "sparse": ["user_id", "item_id", "cate_id"], "dense": ["price"], "embed_dim": 4},
        "model": {"name": "DeepFM", "params": {"deep_features": "all", "fm_features": "sparse",
                                               "mlp_params": {"dims": [8]}}},
        "trainer": {"n_epoch": 2, "batch_size": 128, "progress": False, **trainer},
        "loggers": {"names": ["csv"], "plots": False},
    }


def _digest(folder: Path) -> dict[str, str]:
    """Every file of a folder (hidden ones too) and its content hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def good_run(files, tmp_path_factory):
    folder, _ = files
    out = tmp_path_factory.mktemp("good") / "run"
    train_run(_config(folder, out))
    return out


def test_logs_survive_in_the_final_folder(files, tmp_path):
    folder, _ = files
    out = tmp_path / "run"
    cfg = _config(folder, out)
    cfg["loggers"] = {"names": ["csv", "tensorboard", "mlflow"], "plots": False, "experiment_name": "staging"}
    train_run(cfg)
    metrics = pd.read_csv(out / "logs" / "metrics.csv")
    assert {"train/loss", "val/auc", "epoch", "test/auc"} <= set(metrics["name"])
    assert (out / "logs" / "params.json").is_file()
    assert list((out / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    # the MLflow store moved with the folder: its run, metrics and artifacts are readable there
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{(out / 'logs' / 'mlflow.db').resolve()}")
    (run,) = client.search_runs([client.get_experiment_by_name("staging").experiment_id])
    assert "val/auc" in run.data.metrics and run.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"run.json", "model.safetensors"}
    assert not list(tmp_path.glob(".run.partial*")) and not list(tmp_path.glob(".run.old-*"))


@pytest.mark.parametrize("case", ["monitor", "labels", "header_only", "missing_column", "renamed_column",
                                  "text_in_numbers"])
def test_a_failed_run_leaves_the_earlier_run_as_it_was(files, good_run, tmp_path, case):
    folder, frames = files
    before = _digest(good_run)
    bad = tmp_path / "bad"
    bad.mkdir()
    train = frames["train"].drop(columns=["oracle_prob"])
    cfg = _config(folder, good_run)
    if case == "monitor":
        cfg["trainer"]["earlystop_monitor"] = "acu"
        expected = "acu"
    elif case == "labels":
        train.assign(label=train["label"] + (train.index % 3 == 0)).to_csv(bad / "train.csv", index=False)
        cfg["dataset"]["train"] = str(bad / "train.csv")
        expected = r"label column 'label': the value 2 .*train\.csv data row 4\) is not 0 or 1"
    elif case == "header_only":
        train.head(0).to_csv(bad / "train.csv", index=False)
        cfg["dataset"]["train"] = str(bad / "train.csv")
        expected = r"dataset.train: .*train\.csv holds no data rows"
    else:
        half = len(train) // 2
        train.iloc[:half].to_csv(bad / "a.csv", index=False)
        second = train.iloc[half:]
        if case == "missing_column":
            second = second.drop(columns=["price"])
            expected = r"b\.csv lacks column 'price' that .*a\.csv has"
        elif case == "renamed_column":
            second = second.rename(columns={"item_id": "itemid"})
            expected = r"b\.csv lacks column 'item_id'"
        else:
            second = second.assign(price=["unknown"] + list(second["price"].iloc[1:]))
            expected = r"column 'price' holds text values in .*b\.csv but number values in .*a\.csv"
        second.to_csv(bad / "b.csv", index=False)
        cfg["dataset"]["train"] = [str(bad / "a.csv"), str(bad / "b.csv")]
    with pytest.raises((ConfigError, ValueError, KeyError), match=expected):
        train_run(cfg)
    assert _digest(good_run) == before
    assert not (good_run.parent / ".run.partial").exists()  # failed before writing anything


def test_a_run_that_fails_mid_training_leaves_the_earlier_run_and_a_partial_folder(files, good_run, monkeypatch):
    from trainhub.trainers.base import RecTrainer

    before = _digest(good_run)

    def explode(self, path=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RecTrainer, "save_model", explode)
    with pytest.raises(OSError, match="No space left"):
        train_run(_config(files[0], good_run))
    assert _digest(good_run) == before
    partial = good_run.parent / ".run.partial"
    assert (partial / "last.ckpt").is_file() and not (partial / "run.json").exists()
    monkeypatch.undo()
    train_run(_config(files[0], good_run, n_epoch=1))  # a new run replaces the partial folder
    assert not partial.exists() and load_run(good_run).manifest["epochs_run"] == 1


def test_foreign_files_in_output_dir_are_refused_before_anything_is_written(files, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        train_run(_config(files[0], out))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_second_run_into_the_same_folder_waits_for_none(tmp_path):
    staging = RunStaging(tmp_path / "x")
    with staging.locked():
        with pytest.raises(RuntimeError, match="another trainhub run is writing"):
            with RunStaging(tmp_path / "x").locked():
                pass


def test_an_interrupted_swap_is_undone_by_the_next_run(tmp_path):
    old = tmp_path / ".x.old-abcd"
    old.mkdir()
    (old / "run.json").write_text("{}")
    with RunStaging(tmp_path / "x").locked():
        pass
    assert (tmp_path / "x" / "run.json").read_text() == "{}" and not old.exists()


def test_resume_true_without_a_checkpoint_is_an_error_before_writing(files, tmp_path):
    with pytest.raises(FileNotFoundError, match="trainer.resume=true"):
        train_run(_config(files[0], tmp_path / "new", resume=True))
    assert not any(tmp_path.iterdir()) or [p.name for p in tmp_path.iterdir()] == [".new.lock"]


def test_resume_with_another_config_is_refused(files, good_run, tmp_path):
    cfg = _config(files[0], good_run, resume="auto", n_epoch=3)
    cfg["model"]["params"]["mlp_params"] = {"dims": [16]}
    with pytest.raises(ConfigError, match="different 'model' section"):
        train_run(cfg)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_resume_trains_a_finished_run_further_like_one_longer_run(files, tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    train_run(_config(files[0], short, n_epoch=1, earlystop_patience=5))
    train_run(_config(files[0], short, n_epoch=3, earlystop_patience=5, resume="auto"))
    train_run(_config(files[0], long, n_epoch=3, earlystop_patience=5))
    a, b = _weights(short), _weights(long)
    assert all(bool((a[k] == b[k]).all()) for k in a)
    assert (short / "logs" / "metrics.csv").read_text() == (long / "logs" / "metrics.csv").read_text()
    assert load_run(short).metrics == load_run(long).metrics


def test_sigkill_then_resume_ends_like_an_uninterrupted_run(files, tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    frames = synthetic_ctr(rows=12000, seed=7)
    for part in ("train", "val", "test"):
        frames[part].drop(columns=["oracle_prob"]).to_csv(big / f"{part}.csv", index=False)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    cfg = _config(big, killed, n_epoch=4, earlystop_patience=5, batch_size=64)
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "trainhub.cli", "train", str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / ".killed.partial" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert ckpt.exists() and not killed.exists(), "the run finished before it could be killed"
    result = subprocess.run([sys.executable, "-m", "trainhub.cli", "train", str(path), "trainer.resume=auto"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    train_run(_config(big, whole, n_epoch=4, earlystop_patience=5, batch_size=64))
    a, b = _weights(killed), _weights(whole)
    assert all(bool((a[k] == b[k]).all()) for k in a)
    assert (killed / "logs" / "metrics.csv").read_text() == (whole / "logs" / "metrics.csv").read_text()
    assert load_run(killed).metrics == load_run(whole).metrics


def test_infinite_dense_values_are_named_before_training(files, tmp_path):
    folder, frames = files
    train = frames["train"].drop(columns=["oracle_prob"])
    train.loc[5, "price"] = float("inf")
    train.to_csv(tmp_path / "train.csv", index=False)
    cfg = _config(folder, tmp_path / "run")
    cfg["dataset"]["train"] = str(tmp_path / "train.csv")
    with pytest.raises(ConfigError, match=r"dense column 'price' .* infinite value \(inf at .*train\.csv data row 6"):
        train_run(cfg)
    assert not (tmp_path / "run").exists() and not (tmp_path / ".run.partial").exists()


def test_trailing_separators_do_not_shift_columns_and_a_constant_label_warns(files, tmp_path, caplog):
    from trainhub.runs.prepare import read_table

    (tmp_path / "t.csv").write_text("user_id,item_id,price,label\nu1,i1,1.5,0,\nu2,i2,2.5,1,\n")
    frame = read_table(str(tmp_path / "t.csv"))
    assert frame["user_id"].tolist() == ["u1", "u2"] and frame["label"].tolist() == [0, 1]
    folder, frames = files
    train = frames["train"].drop(columns=["oracle_prob"]).assign(label=0)
    train.to_csv(tmp_path / "zeros.csv", index=False)
    cfg = _config(folder, tmp_path / "run", n_epoch=1)
    cfg["dataset"]["train"] = str(tmp_path / "zeros.csv")
    with caplog.at_level("WARNING"):
        train_run(cfg)
    assert "label column 'label' holds only 0 in the training rows" in caplog.text


def test_a_resume_copy_cut_short_is_never_resumed_from(files, tmp_path, monkeypatch):
    import shutil as sh

    out = tmp_path / "run"
    train_run(_config(files[0], out, n_epoch=1))
    before = _digest(out)

    def full_disk(src, dst, **kw):
        (Path(dst) / "logs").mkdir(parents=True)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sh, "copytree", full_disk)
    with pytest.raises(OSError, match="No space"):
        train_run(_config(files[0], out, n_epoch=2, resume="auto"))
    monkeypatch.undo()
    assert _digest(out) == before and not (tmp_path / ".run.partial").exists()
    assert not list(tmp_path.glob(".run.copy-*"))
    # a partial folder without its config cannot be checked, so it is not resumed
    train_run(_config(files[0], out, n_epoch=2, resume="auto"))
    (tmp_path / ".run.partial").mkdir()
    sh.copy(out / "last.ckpt", tmp_path / ".run.partial" / "last.ckpt")
    with pytest.raises(ConfigError, match="has no config.yaml"):
        train_run(_config(files[0], out, n_epoch=3, resume="auto"))


def test_a_multitask_run_may_replace_its_own_folder(tmp_path):
    cfg = {"output_dir": str(tmp_path / "mt"), "seed": 0, "num_threads": 1,
           "dataset": {"name": "synthetic_multitask", "params": {"rows": 600}},
           "model": {"name": "SharedBottom", "params": {"features": "all", "bottom_params": {"dims": [8]},
                                                         "tower_params_list": [{"dims": [4]}, {"dims": [4]}]}},
           "trainer": {"n_epoch": 1, "progress": False}, "loggers": {"names": [], "plots": False}}
    train_run(cfg)
    assert any(p.name.startswith("model_") for p in (tmp_path / "mt").iterdir())
    train_run(cfg)  # its own model_<mode>_<seed>.pth is part of the run
