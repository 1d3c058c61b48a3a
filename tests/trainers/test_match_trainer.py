"""MatchTrainer: every mode lowers its loss on a learnable toy, embeddings, saving and loading."""

import pytest
import torch

from trainhub.data import DictDataset, make_loader
from trainhub.models import get_model_entry, toy
from trainhub.models.matching import DSSM, MIND, FaceBookDSSM, YoutubeDNN
from trainhub.trainers import MatchTrainer


def _loader(x, y=None, batch_size=16, shuffle=True):
    return make_loader(DictDataset(x, y), batch_size=batch_size, shuffle=shuffle, seed=0)


def _build(name):
    torch.manual_seed(0)
    kwargs, _ = get_model_entry(name).example()
    return get_model_entry(name).cls(**kwargs)


def _fit(model, loader, tmp_path, **kw):
    trainer = MatchTrainer(model, n_epoch=kw.pop("n_epoch", 8), model_path=str(tmp_path), progress=False,
                           optimizer_params={"lr": 0.01, "weight_decay": 0.0}, seed=0, **kw)
    result = trainer.fit(loader)
    losses = [h["train/loss"] for h in result.history]
    return trainer, losses


def test_pointwise_mode_lowers_bce(tmp_path):
    x, y = toy.match_dataset(256)
    trainer, losses = _fit(_build("DSSM"), _loader(x, y), tmp_path, mode=0)
    assert losses[-1] < 0.8 * losses[0]
    probs = trainer.predict(trainer.model, _loader(x, y, shuffle=False))
    assert len(probs) == 256 and all(0 <= p <= 1 for p in probs)
    assert trainer.evaluate(trainer.model, _loader(x, y, shuffle=False)) > 0.8  # AUC on the learnable rule


def test_pairwise_mode_lowers_bpr(tmp_path):
    x, _ = toy.match_dataset(256)
    x = {k: v[::2] for k, v in x.items()}  # rows whose item is liked
    trainer, losses = _fit(_build("FaceBookDSSM"), _loader(x, torch.zeros(128)), tmp_path, mode=1)
    assert losses[-1] < 0.8 * losses[0]


def test_listwise_mode_lowers_softmax_ce(tmp_path):
    x, _ = toy.match_dataset(256)
    x = {k: v[::2] for k, v in x.items()}
    trainer, losses = _fit(_build("YoutubeDNN"), _loader(x, torch.zeros(128)), tmp_path, mode=2)
    assert losses[-1] < 0.8 * losses[0]
    # validation auc: the positive beats the sampled negatives
    assert trainer.evaluate(trainer.model, _loader(x, torch.zeros(128), shuffle=False)) > 0.8


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("name", ["DSSM", "MIND"])
def test_in_batch_negatives_train_in_every_mode(tmp_path, name, mode):
    x, _ = toy.match_dataset(256)
    x = {k: v[::2] for k, v in x.items()}
    trainer, losses = _fit(_build(name), _loader(x, torch.ones(128)), tmp_path, mode=mode, in_batch_neg=True,
                           in_batch_neg_ratio=8, sampler_seed=0, n_epoch=6)
    assert losses[-1] < losses[0]


def test_in_batch_rejects_models_without_towers():
    with pytest.raises(TypeError, match="user_tower"):
        MatchTrainer(torch.nn.Linear(2, 2), in_batch_neg=True)


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="mode must be"):
        MatchTrainer(_build("DSSM"), mode=4)


def test_inference_embedding_shapes_loads_saved_weights_and_restores_mode(tmp_path):
    x, y = toy.match_dataset(64)
    model = _build("DSSM")
    trainer, _ = _fit(model, _loader(x, y), tmp_path, mode=0, n_epoch=1)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # disturb the weights: inference must reload model.pth
        for p in model.parameters():
            p.add_(1.0)
    model.train()
    users = trainer.inference_embedding(model, "user", _loader(x, shuffle=False), str(tmp_path))
    items = trainer.inference_embedding(model, "item", _loader(x, shuffle=False), str(tmp_path))
    assert users.shape == (64, 8) and items.shape == (64, 8)
    assert model.mode is None and model.training
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    model.eval()
    with torch.no_grad():
        assert torch.allclose(users, model.user_tower(x), atol=1e-6)
        assert torch.allclose(items, model.item_tower(x), atol=1e-6)


def test_inference_embedding_multi_interest_and_prefixed_weights(tmp_path):
    x, _ = toy.match_dataset(40)
    model = _build("MIND")
    trainer = MatchTrainer(model, mode=2, model_path=str(tmp_path), progress=False)
    # weights saved by a DataParallel model elsewhere carry "module."
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "model.pth")
    users = trainer.inference_embedding(model, "user", _loader(x, batch_size=16, shuffle=False), tmp_path)
    items = trainer.inference_embedding(model, "item", _loader(x, batch_size=16, shuffle=False), tmp_path)
    assert users.shape == (40, 3, 8) and items.shape == (40, 8)


def test_inference_embedding_errors(tmp_path):
    model = _build("DSSM")
    trainer = MatchTrainer(model, model_path=str(tmp_path), progress=False)
    x, _ = toy.match_dataset(8)
    with pytest.raises(ValueError, match="'user' or 'item'"):
        trainer.inference_embedding(model, "users", _loader(x), None)
    with pytest.raises(FileNotFoundError, match="model.pth"):
        trainer.inference_embedding(model, "user", _loader(x), tmp_path / "missing")
    assert trainer.inference_embedding(model, "user", _loader(x), None).shape == (8, 8)


def test_fit_with_validation_keeps_best_and_saves_plain_state(tmp_path):
    x, y = toy.match_dataset(128)
    model = _build("DSSM")
    trainer = MatchTrainer(model, mode=0, n_epoch=3, earlystop_patience=1, model_path=str(tmp_path), progress=False,
                           optimizer_params={"lr": 0.01})
    result = trainer.fit(_loader(x, y), _loader(x, y, shuffle=False))
    assert "val/auc" in result.history[0]
    state = torch.load(tmp_path / "model.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    assert isinstance(model, (DSSM, FaceBookDSSM, YoutubeDNN, MIND))
