"""Training and validation curves share the optimizer-step axis; the epoch is a metric of its own;
trainers log what a run needs to be compared (batch size, seed, sizes, parameter count)."""

import json

from tests.conftest import make_ctr_data
from trainhub.data import DataGenerator
from trainhub.logging import CSVLogger
from trainhub.logging.stdout import StdoutLogger
from trainhub.models.ranking import DeepFM
from trainhub.models.summary import model_summary
from trainhub.trainers import CTRTrainer


class Recorder:
    def __init__(self):
        self.metrics, self.params = [], {}

    def log_metrics(self, metrics, step):
        self.metrics.append((step, dict(metrics)))

    def log_params(self, params):
        self.params.update(params)


def _fit(tmp_path, n_epoch=3):
    sparse, dense, x, y = make_ctr_data(400, seed=1)
    train_dl, val_dl, _ = DataGenerator(x, y).generate_dataloader(split_ratio=[0.6, 0.2], batch_size=16)
    model = DeepFM(deep_features=sparse + dense, fm_features=sparse, mlp_params={"dims": [16, 8]})
    rec = Recorder()
    trainer = CTRTrainer(model, n_epoch=n_epoch, earlystop_patience=10, model_path=tmp_path, progress=False,
                         seed=7, model_logger=rec)
    result = trainer.fit(train_dl, val_dl)
    return rec, result, train_dl, model


def test_epoch_metrics_are_logged_at_the_optimizer_step(tmp_path):
    rec, result, train_dl, _ = _fit(tmp_path)
    steps_per_epoch = len(train_dl)  # 240 rows / 16 -> 15 steps; step losses every 10
    epoch_logs = [(s, m) for s, m in rec.metrics if "val/auc" in m]
    assert [s for s, _ in epoch_logs] == [steps_per_epoch * (e + 1) for e in range(3)]
    assert [m["epoch"] for _, m in epoch_logs] == [1, 2, 3]
    step_losses = [s for s, m in rec.metrics if "train/step_loss" in m]
    assert step_losses and max(step_losses) <= epoch_logs[-1][0]  # one axis for both curves
    assert "epoch" not in result.history[0]  # the history keeps its Torch-RecHub-shaped keys


def test_trainer_params_name_batch_size_seed_and_model_sizes(tmp_path):
    rec, _, train_dl, model = _fit(tmp_path, n_epoch=1)
    p = rec.params
    assert p["batch_size"] == 16 and p["seed"] == 7
    assert p["num_parameters"] == sum(t.numel() for t in model.parameters()) > 0
    assert p["embedding.user.rows"] == 10 and p["embedding.user.dim"] == 8
    assert p["mlp.mlp.dims"] == "16,8,1"


def test_model_summary_counts_every_table_and_mlp():
    sparse, dense, _, _ = make_ctr_data(10)
    summary = model_summary(DeepFM(deep_features=sparse + dense, fm_features=sparse, mlp_params={"dims": [4]}))
    assert {k for k in summary if k.startswith("embedding.")} == {
        f"embedding.{n}.{a}" for n in ("user", "item", "city") for a in ("rows", "dim")}
    assert summary["mlp.mlp.dims"] == "4,1"


def test_csv_params_accumulate_over_calls(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_params({"a": 1})
    logger.log_params({"b": 2})
    logger.close()
    assert json.loads((tmp_path / "params.json").read_text()) == {"a": 1, "b": 2}


def test_stdout_names_epoch_and_step(capsys):
    StdoutLogger().log_metrics({"train/loss": 0.5, "epoch": 2.0}, step=40)
    StdoutLogger().log_metrics({"val/auc": 0.7}, step=45)
    out = capsys.readouterr().out.splitlines()
    assert out == ["epoch 2 (step 40): train/loss=0.5", "step 45: val/auc=0.7"]
