import pickle

import pytest
import torch
from torch import nn

from trainhub.engine import Checkpointer, load_state, load_weights, save_state, save_weights
from trainhub.engine.checkpoint import atomic_write


def test_weights_round_trip_without_module_prefix(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2))
    wrapped = nn.DataParallel(model)  # on CPU this only wraps, which is what we need
    path = save_weights(tmp_path / "w.safetensors", wrapped)
    state = load_weights(path)
    assert set(state) == {"0.weight", "0.bias"}
    fresh = nn.Sequential(nn.Linear(3, 2))
    load_weights(path, fresh)
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_failed_write_keeps_previous_file(tmp_path):
    target = tmp_path / "state.ckpt"
    save_state(target, {"x": torch.ones(2)})

    def broken(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert torch.equal(load_state(target)["x"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["integrity.json", "state.ckpt"]  # no temp file left behind


class Evil:
    def __reduce__(self):
        return (exec, ("import os; os.environ['TRAINHUB_PWNED'] = '1'",))


def test_loading_never_runs_pickled_code(tmp_path, monkeypatch):
    monkeypatch.delenv("TRAINHUB_PWNED", raising=False)
    path = tmp_path / "last.ckpt"
    with open(path, "wb") as fh:
        pickle.dump({"model": Evil()}, fh)
    with pytest.raises(pickle.UnpicklingError):
        load_state(path)
    import os

    assert "TRAINHUB_PWNED" not in os.environ


def test_checkpointer_best_and_last(tmp_path):
    ck = Checkpointer(tmp_path / "ck")
    model = nn.Linear(2, 1)
    assert not ck.has_best() and ck.load_resume() is None
    ck.save_best(model)
    ck.save_resume({"model": model, "state": {"epoch": 3}})
    assert ck.has_best()
    assert ck.load_resume()["state"]["epoch"] == 3


def test_resume_state_is_written_without_crc32s_and_the_setting_is_restored(tmp_path):
    import zipfile

    torch.serialization.set_crc32_options(True)
    state = {"x": torch.arange(1000, dtype=torch.float32), "step": 7}
    save_state(tmp_path / "s.ckpt", state)
    assert torch.serialization.get_crc32_options() is True
    back = load_state(tmp_path / "s.ckpt")
    assert torch.equal(back["x"], state["x"]) and back["step"] == 7
    records = {i.filename.rsplit("/", 1)[-1]: i.CRC for i in zipfile.ZipFile(tmp_path / "s.ckpt").infolist()}
    assert records["0"] == 0  # the tensor's record: no CRC computed
    with pytest.raises((AttributeError, pickle.PicklingError)):  # torch.save refuses it; the setting comes back
        save_state(tmp_path / "bad.ckpt", {"f": lambda: 0})
    assert torch.serialization.get_crc32_options() is True


def test_model_pth_keeps_its_crc32s(tmp_path):
    import zipfile

    from trainhub.trainers import CTRTrainer

    trainer = CTRTrainer(nn.Linear(3, 1), model_path=tmp_path, n_epoch=1)
    path = trainer.save_model()
    assert zipfile.ZipFile(path).testzip() is None  # every record's CRC checks out
