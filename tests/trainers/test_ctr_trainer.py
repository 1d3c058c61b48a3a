import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import make_ctr_data
from trainhub.data import DataGenerator, DictDataset, make_loader
from trainhub.engine import load_weights
from trainhub.models.ranking import DCN, DeepFM, WideDeep
from trainhub.tasks import Regularization
from trainhub.trainers import CTRTrainer


def loaders(n=600, batch_size=64, seed=0):
    sparse, dense, x, y = make_ctr_data(n, seed)
    return sparse, dense, DataGenerator(x, y).generate_dataloader(split_ratio=[0.6, 0.2], batch_size=batch_size)


def deepfm(sparse, dense):
    return DeepFM(deep_features=sparse + dense, fm_features=sparse, mlp_params={"dims": [16], "dropout": 0.0})


def test_fit_learns_and_saves_best_weights_without_prefix(tmp_path):
    torch.manual_seed(0)
    sparse, dense, (train_dl, val_dl, test_dl) = loaders()
    trainer = CTRTrainer(deepfm(sparse, dense), optimizer_params={"lr": 0.01, "weight_decay": 0.0}, n_epoch=8,
                         earlystop_patience=20, model_path=tmp_path, progress=False, seed=0)
    result = trainer.fit(train_dl, val_dl)
    val_aucs = [h["val/auc"] for h in result.history]
    assert max(val_aucs) > 0.75
    # early stopping never fired; the kept model is still the best epoch's, not the last
    assert not result.stopped_early and len(val_aucs) == 8
    assert result.best_epoch == int(np.argmax(val_aucs))
    assert trainer.evaluate(trainer.model, val_dl) == pytest.approx(max(val_aucs), abs=1e-9)
    saved = torch.load(tmp_path / "model.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in saved)
    best = load_weights(tmp_path / "best.safetensors")
    assert all(torch.equal(saved[k], best[k]) for k in best)
    assert 0.6 < trainer.evaluate(trainer.model, test_dl) <= 1.0


def test_best_epoch_is_kept_when_later_epochs_get_worse(tmp_path):
    # A large learning rate on a small set overfits: validation AUC peaks early, then falls.
    torch.manual_seed(1)
    sparse, dense, (train_dl, val_dl, _) = loaders(n=300, batch_size=16, seed=3)
    model = WideDeep(sparse, sparse + dense, {"dims": [64, 64]})
    trainer = CTRTrainer(model, optimizer_params={"lr": 0.1, "weight_decay": 0.0}, n_epoch=6,
                         earlystop_patience=50, model_path=tmp_path, progress=False, seed=1)
    result = trainer.fit(train_dl, val_dl)
    val_aucs = [h["val/auc"] for h in result.history]
    assert result.best_epoch < len(val_aucs) - 1 and max(val_aucs) > val_aucs[-1]
    assert trainer.evaluate(trainer.model, val_dl) == pytest.approx(max(val_aucs), abs=1e-9)


def test_early_stopping_fires_and_any_scheduler_works(tmp_path):
    sparse, dense, (train_dl, val_dl, _) = loaders()
    trainer = CTRTrainer(DCN(sparse + dense, 2, {"dims": [16]}), n_epoch=30, earlystop_patience=2,
                         scheduler_fn=torch.optim.lr_scheduler.ExponentialLR, scheduler_params={"gamma": 0.5},
                         optimizer_params={"lr": 0.05}, model_path=tmp_path, progress=False, seed=0)
    result = trainer.fit(train_dl, val_dl)
    assert result.stopped_early and result.state.epoch < 30
    assert result.state.epoch == result.best_epoch + 3
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5 ** result.state.epoch)


def test_predict_returns_probabilities_for_xy_and_x_only_loaders(tmp_path):
    sparse, dense, x, y = make_ctr_data(50)
    trainer = CTRTrainer(deepfm(sparse, dense), n_epoch=1, model_path=tmp_path, progress=False)
    with_y = trainer.predict(trainer.model, make_loader(DictDataset(x, y), 16))
    x_only = trainer.predict(trainer.model, make_loader(DictDataset(x), 16))
    assert len(with_y) == 50 and with_y == x_only
    assert all(0.0 < p < 1.0 for p in with_y)


class AuxModel(nn.Module):
    def __init__(self, aux: float):
        super().__init__()
        self.w = nn.Embedding(10, 1)
        self.aux = aux

    def forward(self, x):
        logits = self.w(x["user"]).squeeze(1)
        return (logits, torch.tensor(self.aux)) if self.aux is not None else logits


def test_loss_mode_false_adds_the_auxiliary_loss(tmp_path):
    sparse, dense, x, y = make_ctr_data(64)
    dl = make_loader(DictDataset(x, y), 64)
    torch.manual_seed(0)
    plain = CTRTrainer(AuxModel(None), model_path=tmp_path, progress=False)
    torch.manual_seed(0)
    with_aux = CTRTrainer(AuxModel(1.5), loss_mode=False, model_path=tmp_path, progress=False)
    assert with_aux.train_one_epoch(dl) == pytest.approx(plain.train_one_epoch(dl) + 1.5, rel=1e-6)
    with pytest.raises(TypeError, match="loss_mode=False"):
        CTRTrainer(AuxModel(1.5), model_path=tmp_path, progress=False).train_one_epoch(dl)


def test_bad_input_is_named(tmp_path):
    sparse, dense, x, y = make_ctr_data(32)
    trainer = CTRTrainer(deepfm(sparse, dense), model_path=tmp_path, progress=False)
    y_bad = y.copy()
    y_bad[5] = 2
    with pytest.raises(ValueError, match="found 2 at row 5"):
        trainer.train_one_epoch(make_loader(DictDataset(x, y_bad), 32))
    x_missing = {k: v for k, v in x.items() if k != "item"}
    with pytest.raises(KeyError, match="'item' is missing"):
        trainer.train_one_epoch(make_loader(DictDataset(x_missing, y), 32))
    x_big = dict(x, city=x["city"] + 10)
    with pytest.raises(ValueError, match="'city': id 1[0-4] is outside"):
        trainer.train_one_epoch(make_loader(DictDataset(x_big, y), 32))


def test_gpus_follow_torch_rechub_device_rule(tmp_path):
    """``device`` says where training runs; ``gpus`` adds DataParallel only with 2+ ids on CUDA."""
    sparse, dense, x, y = make_ctr_data(64)
    trainer = CTRTrainer(deepfm(sparse, dense), device="cpu", gpus=[0], model_path=tmp_path, progress=False)
    assert trainer.device.type == "cpu" and not isinstance(trainer.model, nn.DataParallel)
    trainer.train_one_epoch(make_loader(DictDataset(x, y), 32))
    trainer = CTRTrainer(deepfm(sparse, dense), device="cpu", gpus=[0, 1], model_path=tmp_path, progress=False)
    assert trainer.device.type == "cpu" and not isinstance(trainer.model, nn.DataParallel)


def test_a_missing_cuda_device_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    sparse, dense, _, _ = make_ctr_data(8)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        CTRTrainer(deepfm(sparse, dense), device="cuda:0", gpus=[0], model_path=tmp_path)


def test_regularization_matches_hand_computation():
    model = nn.Sequential(nn.Embedding(3, 2), nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.0, 3.0], [1.0, 1.0]]))
        model[1].weight.copy_(torch.tensor([[2.0, -1.0]]))
        model[1].bias.fill_(0.5)
    reg = Regularization({"embedding_l1": 0.1, "embedding_l2": 0.01, "dense_l1": 0.2, "dense_l2": 0.02})
    emb_l1, emb_l2 = 8.0, 16.0
    dense_l1, dense_l2 = 3.5, 5.25  # Linear weight + bias; BatchNorm excluded
    expected = 0.1 * emb_l1 + 0.01 * emb_l2 + 0.2 * dense_l1 + 0.02 * dense_l2
    assert float(reg(model).detach()) == pytest.approx(expected)
    assert Regularization()(model) == 0.0
    with pytest.raises(ValueError, match="unknown regularization_params"):
        Regularization({"l2": 1.0})


def test_resume_continues_from_last_checkpoint(tmp_path):
    sparse, dense, (train_dl, val_dl, _) = loaders()
    torch.manual_seed(0)
    whole = CTRTrainer(deepfm(sparse, dense), n_epoch=4, model_path=tmp_path / "whole", progress=False)
    whole.fit(train_dl, val_dl)
    torch.manual_seed(0)
    first = CTRTrainer(deepfm(sparse, dense), n_epoch=2, model_path=tmp_path / "parts", progress=False)
    first.fit(train_dl, val_dl)
    torch.manual_seed(5)  # other initial weights: everything must come from last.ckpt
    second = CTRTrainer(deepfm(sparse, dense), n_epoch=4, model_path=tmp_path / "parts", progress=False,
                        resume=True)
    result = second.fit(train_dl, val_dl)
    assert result.state.epoch == 4 and len(result.history) == 4
    assert result.history[:2] == first.fit_result.history
    assert [h["val/auc"] for h in result.history] == pytest.approx([h["val/auc"] for h in whole.fit_result.history])
    for (name, a), b in zip(whole.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_legacy_model_logger_and_csv_logger_receive_metrics(tmp_path):
    received = []

    class Legacy:
        def log_metrics(self, metrics, step):
            received.append((step, dict(metrics)))

        def log_hyperparams(self, params):
            received.append(("params", params))

        def finish(self):
            received.append(("finish",))

    sparse, dense, (train_dl, val_dl, _) = loaders()
    trainer = CTRTrainer(deepfm(sparse, dense), n_epoch=2, model_path=tmp_path, progress=False,
                         model_logger=Legacy(), loggers=["csv"])
    trainer.fit(train_dl, val_dl)
    epochs = [r for r in received if isinstance(r[0], int) and "val/auc" in r[1]]
    # epoch-end metrics are logged at the optimizer step (the axis of the step losses), with the epoch
    assert [e[0] for e in epochs] == [len(train_dl), 2 * len(train_dl)]
    assert [e[1]["epoch"] for e in epochs] == [1, 2]
    assert received[0][0] == "params" and received[-1] == ("finish",)
    assert "val/auc" in (tmp_path / "logs" / "metrics.csv").read_text()


def test_embedding_tables_take_row_wise_updates_by_default_and_dense_ones_on_request(tmp_path):
    from trainhub.optim import HybridOptimizer, RowWiseAdam

    sparse, dense, (train_dl, val_dl, _) = loaders(n=300)
    fast = CTRTrainer(deepfm(sparse, dense), n_epoch=1, model_path=tmp_path / "a", progress=False)
    assert isinstance(fast.optimizer, HybridOptimizer) and isinstance(fast.optimizer.rowwise, RowWiseAdam)
    assert type(fast.optimizer.dense) is torch.optim.Adam
    exact = CTRTrainer(deepfm(sparse, dense), n_epoch=1, model_path=tmp_path / "b", progress=False,
                       sparse_embeddings=False)
    assert type(exact.optimizer) is torch.optim.Adam
    momentum = CTRTrainer(deepfm(sparse, dense), optimizer_fn=torch.optim.SGD,
                          optimizer_params={"lr": 0.1, "momentum": 0.9}, n_epoch=1, model_path=tmp_path / "c",
                          progress=False)
    assert type(momentum.optimizer) is torch.optim.SGD and not momentum.sparse_embeddings
    for trainer in (fast, exact, momentum):
        trainer.fit(train_dl, val_dl)
        assert 0.5 < trainer.evaluate(trainer.model, val_dl) <= 1.0


def test_row_wise_run_resumes_exactly_with_clipping_and_accumulation(tmp_path):
    sparse, dense, (train_dl, val_dl, _) = loaders(n=300)

    def run(n_epoch, path, resume=False):
        torch.manual_seed(0)
        trainer = CTRTrainer(deepfm(sparse, dense), n_epoch=n_epoch, model_path=path, progress=False, seed=0,
                             resume=resume, max_grad_norm=0.5)
        trainer.config.grad_accum_steps = 2
        trainer.fit(train_dl, val_dl)
        return trainer

    full = run(3, tmp_path / "full")
    run(1, tmp_path / "cut")
    resumed = run(3, tmp_path / "cut", resume=True)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
