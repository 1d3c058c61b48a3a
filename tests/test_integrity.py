"""Every weight and checkpoint file is verified on load: one flipped byte inside a tensor of
``last.ckpt``, ``best.safetensors``, ``model.safetensors`` or ``model.pth`` raises an error naming
the file, on every load path (resume, ``load_run``, ``load_weights``, ``trainhub predict``)."""

from __future__ import annotations

import json

import pytest
import torch

from trainhub.cli import main
from trainhub.data.synthetic import synthetic_ctr
from trainhub.engine.checkpoint import load_state, load_weights, save_state, save_weights
from trainhub.integrity import RECORD, IntegrityError, record_file, verify_file
from trainhub.runs import load_run, train_run


def _flip(path, offset_from_end: int = 64) -> None:
    """Flip one byte near the end of the file: inside the last tensor's data, past every header."""
    data = bytearray(path.read_bytes())
    data[len(data) - offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("integrity")
    frames = synthetic_ctr(rows=600, seed=2)
    for part in ("train", "val", "test"):
        frames[part].drop(columns=["oracle_prob"]).to_csv(folder / f"{part}.csv", index=False)
    cfg = {"output_dir": str(folder / "run"), "seed": 1, "num_threads": 1,
           "dataset": {"train": str(folder / "train.csv"), "val": str(folder / "val.csv"),
                       "test": str(folder / "test.csv"), "label": "label",
                       "sparse": ["user_id", "item_id"], "dense": ["price"], "embed_dim": 4},
           "model": {"name": "DeepFM", "params": {"deep_features": "all", "fm_features": "sparse",
                                                  "mlp_params": {"dims": [8]}}},
           "trainer": {"n_epoch": 1, "batch_size": 128, "progress": False},
           "loggers": {"names": [], "plots": False}}
    train_run(cfg)
    return folder / "run", cfg


def test_every_weight_file_of_a_run_is_recorded(run_dir):
    folder, _ = run_dir
    files = json.loads((folder / RECORD).read_text())["files"]
    assert {"model.safetensors", "best.safetensors", "last.ckpt", "model.pth"} <= set(files)
    for name in files:
        assert verify_file(folder / name)


@pytest.mark.parametrize("name", ["model.safetensors", "best.safetensors", "last.ckpt", "model.pth"])
def test_a_flipped_byte_is_caught_on_every_load_path(run_dir, tmp_path, name, capsys):
    import shutil

    folder, cfg = run_dir
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    _flip(copy / name)
    with pytest.raises(IntegrityError, match=rf"{name} does not match the checksum"):
        verify_file(copy / name)
    if name == "model.safetensors":
        with pytest.raises(IntegrityError, match=name):
            load_run(copy)
        code = main(["predict", str(copy), cfg["dataset"]["test"]])
        assert code == 2 and f"{name} does not match" in capsys.readouterr().err
    elif name == "last.ckpt":  # resume reads it
        with pytest.raises(IntegrityError, match=name):
            train_run({**cfg, "output_dir": str(copy), "trainer": {**cfg["trainer"], "n_epoch": 2, "resume": True}})
    elif name == "best.safetensors":
        with pytest.raises(IntegrityError, match=name):
            load_weights(copy / name)
    else:
        with pytest.raises(IntegrityError, match=name):
            load_state(copy / name)


def test_a_wrong_size_is_named_and_unrecorded_files_load(tmp_path):
    save_weights(tmp_path / "w.safetensors", {"a": torch.arange(6.0)})
    with open(tmp_path / "w.safetensors", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError, match="is truncated or damaged: it has .* bytes, .* were written"):
        load_weights(tmp_path / "w.safetensors")
    other = tmp_path / "elsewhere"
    other.mkdir()
    torch.save({"a": torch.ones(2)}, other / "x.pt")  # written by another tool: nothing to verify against
    assert not verify_file(other / "x.pt")
    assert load_state(other / "x.pt")["a"].sum() == 2


def test_a_crash_between_record_and_rename_is_no_false_alarm(tmp_path):
    path = tmp_path / "s.ckpt"
    save_state(path, {"a": torch.ones(3)})
    staged = tmp_path / ".s.ckpt.123.ab.tmp"  # the next write recorded its file, then died before the rename
    torch.save({"a": torch.zeros(5)}, staged)
    record_file(staged, "s.ckpt")
    assert verify_file(path)  # the old file matches the record's previous entry
    assert load_state(path)["a"].sum() == 3


@pytest.mark.parametrize("name, damage, expected", [
    ("encoder.json", b"\x80\x04pickle", "encoder.json is not a UTF-8 JSON file"),
    ("preprocess.json", b"{not json", r"preprocess.json is not valid JSON \(line 1, column 2"),
    ("run.json", b"[1, 2", "run.json is not valid JSON"),
])
def test_damaged_json_files_are_named(run_dir, tmp_path, name, damage, expected):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir[0], copy)
    (copy / name).write_bytes(damage)
    with pytest.raises(ValueError, match=expected):
        load_run(copy)


def test_an_encoder_missing_a_column_is_named(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir[0], copy)
    enc = json.loads((copy / "encoder.json").read_text())
    enc["columns"].remove("item_id")
    del enc["vocab"]["item_id"]
    (copy / "encoder.json").write_text(json.dumps(enc))
    with pytest.raises(ValueError, match="encoder.json has no vocabulary for column 'item_id'"):
        load_run(copy)
