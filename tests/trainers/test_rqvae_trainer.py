"""The RQ-VAE trainer (upstream ``torch_rechub.trainers.rqvae_trainer.Trainer``) on the engine."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from trainhub.data import EmbDataset
from trainhub.engine import EarlyStopping, FitConfig, fit
from trainhub.models.generative.rqvae import RQVAEModel
from trainhub.tasks import RQVAETask
from trainhub.trainers import RQVAETrainer
from trainhub.trainers.rqvae_trainer import Trainer


def items(n=96, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g) @ torch.randn(3, dim, generator=g)


def model(**kw):
    torch.manual_seed(0)
    return RQVAEModel(**{**dict(in_dim=16, num_emb_list=[8, 8], e_dim=4, layers=[12], kmeans_init=True), **kw})


def test_module_path_alias():
    assert Trainer is RQVAETrainer


def test_fit_returns_best_loss_and_collision_rate_and_writes_both_weight_files(tmp_path):
    data = EmbDataset(items())
    net = model()
    trainer = Trainer(net, optimizer_params={"lr": 1e-2, "weight_decay": 0.0}, n_epoch=4, eval_step=2,
                      model_path=str(tmp_path), progress=False, seed=0)
    best_loss, best_collision = trainer.fit(DataLoader(data, batch_size=32, shuffle=True))
    history = trainer.fit_result.history
    evaluated = [h for h in history if "val/collision_rate" in h]
    assert len(evaluated) == 2  # epochs 2 and 4
    assert best_collision == min(h["val/collision_rate"] for h in evaluated)
    assert best_loss == pytest.approx(min(h["train/loss"] for h in evaluated))
    assert {"val/usage_0", "val/perplexity_1", "val/loss", "train/recon_loss"} <= set(history[-1])
    for name in ("model_best_collision_rate.pth", "model_best_loss.pth"):
        fresh = model()
        fresh.load_state_dict(torch.load(tmp_path / name, weights_only=True))
    # the model keeps the best-collision weights, which is what the file holds
    assert trainer.evaluate(DataLoader(data, batch_size=50)) == best_collision
    assert trainer.evaluate(trainer.model, DataLoader(data, batch_size=50)) == best_collision


def test_eval_step_beyond_n_epoch_still_validates_the_last_epoch(tmp_path):
    trainer = Trainer(model(), n_epoch=2, model_path=str(tmp_path), progress=False)  # eval_step=50
    best_loss, best_collision = trainer.fit(DataLoader(EmbDataset(items()), batch_size=32))
    assert math.isfinite(best_loss) and 0.0 <= best_collision < 1.0
    assert (tmp_path / "model_best_collision_rate.pth").is_file()


def test_train_one_epoch_returns_loss_and_reconstruction_loss(tmp_path):
    trainer = Trainer(model(), n_epoch=1, model_path=str(tmp_path), progress=False)
    loss, recon = trainer.train_one_epoch(DataLoader(EmbDataset(items()), batch_size=32))
    assert loss >= recon > 0


def test_the_task_on_the_engine_reports_lower_is_better_metrics():
    task = RQVAETask([8, 8])
    assert task.higher_is_better("collision_rate") is False and task.higher_is_better("usage_0") is True
    loader = DataLoader(items(), batch_size=32)
    net = model()
    result = fit(net, task, torch.optim.Adam(net.parameters(), lr=1e-2), loader, loader,
                 config=FitConfig(max_epochs=2, progress=False), stopper=EarlyStopping("collision_rate", patience=5))
    assert result.best_metrics is not None and 0.0 <= result.best_metrics["collision_rate"] < 1.0


def test_bad_batches_and_eval_step_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="eval_step must be >= 1"):
        Trainer(model(), eval_step=0, model_path=str(tmp_path))
    with pytest.raises(TypeError, match=r"item embeddings \[B, in_dim\]"):
        RQVAETask().training_step(model(), {"x": items()})
