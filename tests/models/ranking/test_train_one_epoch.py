"""Every registered ranking model trains one epoch through CTRTrainer on toy data."""

import math

import pytest
import torch

from trainhub.data import DictDataset, make_loader
from trainhub.models import get_model_entry, list_models, toy
from trainhub.trainers import CTRTrainer

RANKING = list_models("ranking")
ZOO = {"EDCN", "AFM", "FiBiNet", "DeepFFM", "FatDeepFFM", "AutoInt", "DIN", "DIEN", "BST", "LR", "FM"}


def test_the_whole_zoo_is_registered():
    assert ZOO <= set(RANKING)


def _loaders(n: int = 96, batch_size: int = 32):
    x = toy.batch(batch_size=n, seed=3)
    y = toy.labels(batch_size=n, seed=3)
    data = DictDataset(x, y)
    return make_loader(data, batch_size, shuffle=True, seed=0), make_loader(data, batch_size)


@pytest.mark.parametrize("name", RANKING)
def test_one_epoch_through_ctr_trainer(name, tmp_path):
    entry = get_model_entry(name)
    torch.manual_seed(0)
    kwargs, batch = entry.example()
    model = entry.cls(**kwargs)
    loss_mode = not isinstance(model(batch), tuple)  # DIEN returns (logits, aux_loss)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_dl, val_dl = _loaders()
    trainer = CTRTrainer(model, n_epoch=1, loss_mode=loss_mode, model_path=tmp_path, progress=False, seed=0)
    trainer.fit(train_dl, val_dl)
    assert (tmp_path / "model.pth").exists()
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, f"{name}: no weight changed after one epoch"
    auc = trainer.evaluate(trainer.model, val_dl)
    assert 0.0 <= auc <= 1.0
    probs = trainer.predict(trainer.model, val_dl)
    assert len(probs) == 96 and all(0.0 < p < 1.0 and math.isfinite(p) for p in probs)


def test_dien_needs_loss_mode_false(tmp_path):
    kwargs, _ = get_model_entry("DIEN").example()
    trainer = CTRTrainer(get_model_entry("DIEN").cls(**kwargs), n_epoch=1, model_path=tmp_path, progress=False)
    with pytest.raises(TypeError, match="loss_mode=False"):
        trainer.fit(_loaders()[0])
