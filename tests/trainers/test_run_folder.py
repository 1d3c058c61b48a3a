"""One folder, one run: configuration checked before any work, an earlier run's files replaced as a
whole, resume errors naming the file, undefined metrics explained once, seeding that covers the model."""

from __future__ import annotations

import json
import logging
import math
import os
import warnings

import numpy as np
import pytest
import torch

from tests.conftest import make_ctr_data
from trainhub.data import DataGenerator, DictDataset, make_loader
from trainhub.engine import CheckpointError, load_weights
from trainhub.models.ranking import DeepFM
from trainhub.trainers import CTRTrainer, MTLTrainer


def loaders(n=200, batch_size=50):
    sparse, dense, x, y = make_ctr_data(n, 0)
    return sparse, dense, DataGenerator(x, y).generate_dataloader(split_ratio=[0.6, 0.2], batch_size=batch_size)


def deepfm(sparse, dense):
    return DeepFM(deep_features=sparse + dense, fm_features=sparse, mlp_params={"dims": [8], "dropout": 0.0})


def trainer(path, n_epoch=2, **kw):
    sparse, dense, _ = loaders()
    torch.manual_seed(0)
    return CTRTrainer(deepfm(sparse, dense), n_epoch=n_epoch, model_path=path, progress=False, **kw)


@pytest.mark.parametrize("n_epoch", [0, -1])
def test_a_run_that_trains_nothing_is_refused_and_writes_nothing(tmp_path, n_epoch):
    (tmp_path / "model.pth").write_bytes(b"earlier run")
    with pytest.raises(ValueError, match=f"n_epoch must be an integer >= 1, got {n_epoch}"):
        trainer(tmp_path, n_epoch=n_epoch)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]
    assert (tmp_path / "model.pth").read_bytes() == b"earlier run"


def test_model_path_that_cannot_be_a_folder_fails_at_construction(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        trainer(blocker)
    with pytest.raises(NotADirectoryError, match="cannot be created"):
        trainer(blocker / "sub")


def test_read_only_model_path_fails_before_training(tmp_path, monkeypatch):
    # Permission bits do not stop root (CI runs as root here): stand in for a read-only folder.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode))
    with pytest.raises(PermissionError, match=r"model_path .* is not writable .*pass a folder you can write to"):
        trainer(tmp_path / "run")
    monkeypatch.setattr(os, "access", real_access)
    _, _, (train_dl, val_dl, _) = loaders()
    t = trainer(tmp_path / "run")
    trained = []
    t.task.training_step = lambda model, batch: trained.append(1)
    from pathlib import Path

    def refuse(self, data):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(Path, "write_bytes", refuse)  # the write probe at fit start
    with pytest.raises(PermissionError, match="Read-only file system"):
        t.fit(train_dl, val_dl)
    assert not trained  # found before epoch 0, not after it


def test_misspelt_monitor_fails_before_anything_is_written(tmp_path):
    _, _, (train_dl, val_dl, _) = loaders()
    t = trainer(tmp_path / "run", earlystop_monitor="acu")
    with pytest.raises(ValueError, match=r"monitors 'acu', but validation produces \['auc', 'logloss'\]"):
        t.fit(train_dl, val_dl)
    assert not (tmp_path / "run").exists()


def test_resume_without_a_checkpoint_is_an_error_and_auto_starts_fresh(tmp_path):
    _, _, (train_dl, val_dl, _) = loaders()
    with pytest.raises(FileNotFoundError, match=r"no .*run/last.ckpt to continue from.*resume=False"):
        trainer(tmp_path / "run", resume=True).fit(train_dl, val_dl)
    assert not (tmp_path / "run" / "logs").exists()  # failed before the loggers opened
    result = trainer(tmp_path / "run", resume="auto", loggers=["csv"]).fit(train_dl, val_dl)
    assert result.state.epoch == 2 and (tmp_path / "run" / "last.ckpt").is_file()
    with pytest.raises(ValueError, match="resume must be True, False or 'auto'"):
        trainer(tmp_path / "x", resume="yes")


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_damaged_last_checkpoint_names_the_file_and_the_way_out(tmp_path, damage):
    _, _, (train_dl, val_dl, _) = loaders()
    trainer(tmp_path, n_epoch=1).fit(train_dl, val_dl)
    last = tmp_path / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(b"" if damage == "empty" else data[: len(data) - 20])
    with pytest.raises(CheckpointError) as err:
        trainer(tmp_path, n_epoch=2, resume=True).fit(train_dl, val_dl)
    assert str(last) in str(err.value) and "resume=False" in str(err.value)
    assert ("empty (0 bytes)" if damage == "empty" else "truncated or damaged") in str(err.value)


def test_checkpoint_of_another_model_is_an_error_naming_the_file(tmp_path):
    _, _, (train_dl, val_dl, _) = loaders()
    trainer(tmp_path, n_epoch=1).fit(train_dl, val_dl)
    sparse, dense, _ = loaders()
    other = DeepFM(deep_features=sparse + dense, fm_features=sparse, mlp_params={"dims": [4], "dropout": 0.0})
    t = CTRTrainer(other, n_epoch=2, model_path=tmp_path, progress=False, resume=True)
    with pytest.raises(CheckpointError, match=r"last.ckpt does not fit this run .*resume=False"):
        t.fit(train_dl, val_dl)


def test_second_run_into_a_folder_replaces_the_first_as_a_whole(tmp_path, caplog):
    _, _, (train_dl, val_dl, _) = loaders()
    trainer(tmp_path, loggers=["csv", "tensorboard"]).fit(train_dl, val_dl)
    first_events = sorted((tmp_path / "logs" / "tensorboard").glob("events.*"))
    assert first_events
    # The second run's validation set has one class: no epoch has a defined AUC, so it never
    # writes a best checkpoint. The first run's best.safetensors must not survive beside it.
    sparse, dense, x, y = make_ctr_data(200, 0)
    one_class = make_loader(DictDataset({k: v[:40] for k, v in x.items()}, np.zeros(40, np.float32)), 20)
    second = trainer(tmp_path, n_epoch=2, loggers=["csv", "tensorboard"])
    with caplog.at_level(logging.WARNING):
        result = second.fit(train_dl, one_class)
    assert "held files of an earlier run" in caplog.text and "best.safetensors" in caplog.text
    assert not (tmp_path / "best.safetensors").exists() and result.best_epoch is None
    saved = torch.load(tmp_path / "model.pth", weights_only=True)
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in second.model.state_dict().items())
    assert all(torch.equal(last["model"][k], v) for k, v in saved.items())
    rows = (tmp_path / "logs" / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,name,value" and sum(",val/auc," in r for r in rows) == 2  # this run's 2 epochs
    assert not any(p.exists() for p in first_events)


def test_one_class_validation_warns_once_and_trains_on(tmp_path, caplog):
    sparse, dense, x, y = make_ctr_data(200, 0)
    train_dl = make_loader(DictDataset(x, y), 50, shuffle=True, seed=0)
    one_class = make_loader(DictDataset({k: v[:30] for k, v in x.items()}, np.ones(30, np.float32)), 10)
    t = trainer(tmp_path, n_epoch=4, earlystop_patience=1)
    with caplog.at_level(logging.WARNING, logger="trainhub"):
        result = t.fit(train_dl, one_class)
    undefined = [r.getMessage() for r in caplog.records if "is undefined (NaN)" in r.getMessage()]
    assert len(undefined) == 1  # one warning for the run, not one per epoch
    assert "'auc'" in undefined[0] and "30 positive, 0 negative rows" in undefined[0]
    assert "neither counts as an improvement nor uses up patience" in undefined[0]
    assert not result.stopped_early and result.state.epoch == 4  # patience=1 was not used up by NaN
    assert "no best checkpoint" in caplog.text and not (tmp_path / "best.safetensors").exists()
    assert all(math.isnan(h["val/auc"]) for h in result.history)


def test_empty_validation_is_reported(tmp_path, caplog):
    sparse, dense, x, y = make_ctr_data(200, 0)
    train_dl = make_loader(DictDataset(x, y), 50)
    empty = make_loader(DictDataset(x, y).subset(torch.arange(0)), 10)
    with caplog.at_level(logging.WARNING, logger="trainhub"):
        trainer(tmp_path, n_epoch=1).fit(train_dl, empty)
    assert "the validation data is empty (its loader yielded no batches)" in caplog.text


def test_best_checkpoint_metadata_holds_step_epoch_monitor_and_value(tmp_path):
    _, _, (train_dl, val_dl, _) = loaders()
    t = trainer(tmp_path, n_epoch=3, optimizer_params={"lr": 0.01})
    result = t.fit(train_dl, val_dl)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "best.safetensors"), "pt") as fh:
        meta = fh.metadata()
    steps_per_epoch = len(train_dl)
    assert meta["monitor"] == "auc" and meta["mode"] == "max"
    assert int(meta["epoch"]) == result.best_epoch
    assert int(meta["step"]) == (result.best_epoch + 1) * steps_per_epoch
    assert float(meta["best_value"]) == pytest.approx(result.best_metrics["auc"])
    assert len(load_weights(tmp_path / "best.safetensors")) > 0


def test_written_files_follow_the_umask_and_stale_temps_are_removed(tmp_path):
    _, _, (train_dl, val_dl, _) = loaders()
    stale = tmp_path / ".last.ckpt.4242.deadbeef.tmp"
    tmp_path.mkdir(exist_ok=True)
    stale.write_bytes(b"left by a killed write")
    old = os.umask(0o027)
    try:
        trainer(tmp_path, n_epoch=1, resume="auto").fit(train_dl, val_dl)
    finally:
        os.umask(old)
    assert not stale.exists()
    for name in ("model.pth", "best.safetensors", "last.ckpt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name
    old = os.umask(0o022)  # the usual umask
    try:
        trainer(tmp_path / "b", n_epoch=1).fit(train_dl, val_dl)
    finally:
        os.umask(old)
    assert (tmp_path / "b" / "last.ckpt").stat().st_mode & 0o777 == 0o644


def test_seed_given_after_an_unseeded_model_is_warned_about(monkeypatch):
    from trainhub.engine import runtime

    sparse, dense, _ = loaders()
    monkeypatch.setattr(runtime, "_SEEDED", False)
    torch.seed()  # an unseeded process: a random 64-bit seed
    model = deepfm(sparse, dense)
    with pytest.warns(UserWarning, match=r"CTRTrainer\(seed=3\) seeds training.*trainhub.seed_everything\(3\)"):
        CTRTrainer(model, n_epoch=1, progress=False, seed=3)
    import trainhub

    trainhub.seed_everything(3)
    model = deepfm(sparse, dense)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MTLTrainer(model_mtl(), ["classification"], n_epoch=1, progress=False, seed=3)


def model_mtl():
    from trainhub.features import SparseFeature
    from trainhub.models.multitask import SharedBottom

    feats = [SparseFeature("a", 5, embed_dim=4)]
    return SharedBottom(feats, ["classification"], {"dims": [4]}, [{"dims": [4]}])


def test_trainer_state_of_the_text_trainer_is_documented_json(tmp_path):
    # The loop hands the best checkpoint's metadata to any checkpointer; the text one writes it as JSON.
    from trainhub.text.checkpoint import TextCheckpointer

    class Cfg:
        tasks = []

    ck = TextCheckpointer(tmp_path, Cfg(), None)
    meta = {"epoch": 1, "step": 12, "monitor": "eval_loss", "mode": "min", "best_value": 0.25}
    ck._static_written = True  # weights only: no tokenizer or config in this unit test
    ck.save_best(torch.nn.Linear(2, 1), meta)
    assert json.loads((tmp_path / "best_model" / "trainer_state.json").read_text()) == meta


def test_new_mtl_run_removes_the_earlier_runs_weights_file_only(tmp_path):
    from tests.trainers.test_mtl_trainer import make_mtl_data
    from trainhub.models.multitask import SharedBottom

    features, x, y = make_mtl_data(120, 0)
    loader = make_loader(DictDataset(x, y), 40)
    (tmp_path / "model_final.pth").write_bytes(b"the user's own file")
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = SharedBottom(features, ["classification"] * 2, {"dims": [4]}, [{"dims": [4]}] * 2)
        MTLTrainer(model, ["classification"] * 2, n_epoch=1, model_path=tmp_path, progress=False).fit(
            loader, loader, seed=seed)
    assert not (tmp_path / "model_base_0.pth").exists() and (tmp_path / "model_base_1.pth").is_file()
    assert (tmp_path / "model_final.pth").read_bytes() == b"the user's own file"
