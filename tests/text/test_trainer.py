"""Trainer end to end on the tiny encoder: evaluate keys, early stopping, best checkpoint, logging,
evaluate(test=True), close(), predict after reload."""

from __future__ import annotations

import json
import math

import pytest
import torch

from trainhub.text import Trainer, load_experiment_config
from trainhub.text.predict import Predictor


def test_train_evaluate_keys_and_learning(make_config):
    cfg = load_experiment_config(make_config(num_epochs=3, early_stopping_patience=3,
                                             metric_for_best_model="eval_overall_f1"))
    trainer = Trainer.from_config(cfg)
    try:
        before = trainer.evaluate()
        result = trainer.train()
        after = trainer.evaluate()
    finally:
        trainer.close()
    expected = {"eval_loss", "eval_overall_f1", "eval_Sentiment_loss", "eval_SwahiliNER_loss"}
    expected |= {f"eval_Sentiment_sentiment_head_{m}" for m in ("accuracy", "precision", "recall", "f1", "macro_f1")}
    expected |= {f"eval_SwahiliNER_ner_head_{m}" for m in ("accuracy", "precision", "recall", "f1")}
    assert expected <= set(after)
    assert after["eval_loss"] == pytest.approx((after["eval_Sentiment_loss"] + after["eval_SwahiliNER_loss"]) / 2)
    assert after["eval_overall_f1"] == pytest.approx(
        (after["eval_Sentiment_sentiment_head_f1"] + after["eval_SwahiliNER_ner_head_f1"]) / 2)
    assert after["eval_loss"] < before["eval_loss"]
    assert after["eval_SwahiliNER_ner_head_f1"] > 0.5
    print(before, after)
    assert len(result.history) >= 1
    # the restored weights are the best ones: re-evaluating gives the best monitored value
    assert after["eval_overall_f1"] == pytest.approx(result.best_metrics["eval_overall_f1"])


def test_early_stopping_and_best_checkpoint(make_config):
    # lr=0 after the first epoch's improvement: nothing improves, so patience=1 stops after epoch 2.
    cfg = load_experiment_config(make_config(num_epochs=5, early_stopping_patience=1, learning_rate=1e-3,
                                             metric_for_best_model="eval_loss"))
    trainer = Trainer.from_config(cfg)
    optim_factory = trainer._create_optimizer_and_scheduler

    def frozen_after_first_epoch(total):
        opt, _ = optim_factory(total)
        steps_per_epoch = len(trainer.train_dataloaders["Sentiment"]) + len(trainer.train_dataloaders["SwahiliNER"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s < steps_per_epoch else 0.0)
        return opt, sched

    trainer._create_optimizer_and_scheduler = frozen_after_first_epoch
    try:
        result = trainer.train()
    finally:
        trainer.close()
    assert result.stopped_early and len(result.history) == 2
    assert result.best_epoch == 0
    best = trainer.output_dir / "best_model"
    for name in ("model.safetensors", "experiment_config.yaml", "label_maps.json", "tokenizer.json",
                 "encoder/config.json", "trainer_state.json"):
        assert (best / name).is_file(), name
    assert json.loads((best / "trainer_state.json").read_text())["monitor"] == "eval_loss"
    labels = json.loads((best / "label_maps.json").read_text())
    assert labels["SwahiliNER"]["heads"]["ner_head"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert (trainer.output_dir / "last.ckpt").is_file()


def test_step_based_eval_and_grad_accum(make_config):
    cfg = load_experiment_config(make_config(num_epochs=1, eval_steps=2, gradient_accumulation_steps=2,
                                             task_sampling="proportional", save_strategy="best"))
    trainer = Trainer.from_config(cfg)
    try:
        result = trainer.train()
    finally:
        trainer.close()
    n_batches = sum(len(dl) for dl in trainer.train_dataloaders.values())
    assert result.state.global_step == math.ceil(n_batches / 2)
    assert (trainer.output_dir / "best_model" / "model.safetensors").is_file()
    assert not (trainer.output_dir / "last.ckpt").exists()  # save_strategy=best keeps no resume file


def test_mlflow_and_tensorboard_output(make_config):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_experiment_config(make_config(num_epochs=1, logging={"service": "both", "experiment_name": "exp"}))
    trainer = Trainer.from_config(cfg)
    try:
        trainer.train()
        trainer.evaluate(test=True)
    finally:
        trainer.close()
    logs = trainer.output_dir / "logs"
    client = MlflowClient(f"sqlite:///{logs.resolve() / 'mlflow.db'}")
    exp = client.get_experiment_by_name("exp")
    run = client.search_runs([exp.experiment_id])[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["training.learning_rate"] == "0.003"
    assert run.data.params["tasks.SwahiliNER.type"] == "ner"
    n_steps = sum(len(dl) for dl in trainer.train_dataloaders.values())
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == n_steps  # every step
    for key in ("eval_loss", "eval_overall_f1", "eval_SwahiliNER_ner_head_f1", "train_epoch_loss",
                "train_Sentiment_loss", "test_Sentiment_sentiment_head_accuracy"):
        assert key in run.data.metrics, key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"experiment_config.yaml", "best_model"} <= artifacts
    acc = EventAccumulator(str(logs / "exp"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train_loss" in tags and "eval_SwahiliNER_ner_head_f1" in tags
    assert len(acc.Scalars("train_loss")) == n_steps


def test_evaluate_test_split_and_close_twice(make_config):
    cfg = load_experiment_config(make_config(num_epochs=1, logging={"service": "tensorboard"}))
    trainer = Trainer.from_config(cfg)
    test_metrics = trainer.evaluate(test=True)
    eval_metrics = trainer.evaluate()
    assert set(test_metrics) == set(eval_metrics)
    assert test_metrics["eval_Sentiment_loss"] != eval_metrics["eval_Sentiment_loss"]  # different rows
    assert sum(len(d) for d in trainer.test_dataloaders["Sentiment"].dataset.items) > 0
    trainer.close()
    trainer.close()  # safe twice
    assert trainer.logger.loggers[0].writer is None


def test_close_after_exception(make_config):
    cfg = load_experiment_config(make_config(num_epochs=1, logging={"service": "mlflow", "experiment_name": "err"}))
    trainer = Trainer.from_config(cfg)
    import mlflow

    def boom(model, batch):
        raise RuntimeError("boom")

    trainer.objective.training_step = boom
    with pytest.raises(RuntimeError, match="boom"):
        try:
            trainer.train()
        finally:
            trainer.close()
    assert mlflow.active_run() is None
    trainer.close()


def test_bad_monitor_and_missing_test_data(make_config):
    cfg = load_experiment_config(make_config(metric_for_best_model="eval_Sentiment_f1"))
    for task in cfg.tasks:
        task.test_data_path = None
    with pytest.raises(ValueError, match="eval_Sentiment_sentiment_head_f1"):
        Trainer.from_config(cfg)  # before the loggers open or anything trains
    cfg.training.metric_for_best_model = "eval_Sentiment_sentiment_head_f1"
    trainer = Trainer.from_config(cfg)
    with pytest.raises(ValueError, match="no test data"):
        trainer.evaluate(test=True)
    trainer.close()


def test_upstream_style_logger_init(make_config):
    # Tests written against the upstream docs patch mlflow and check set_experiment/start_run.
    from unittest.mock import MagicMock, patch

    cfg = load_experiment_config(make_config(logging={"service": "mlflow"}))
    with patch("mlflow.set_experiment") as set_exp, patch("mlflow.start_run") as start, \
            patch("mlflow.create_experiment"), patch("mlflow.get_experiment_by_name"), \
            patch("mlflow.log_params"), patch("mlflow.end_run") as end:
        trainer = Trainer(cfg, MagicMock(), MagicMock(), {}, {})
        set_exp.assert_called_once()
        start.assert_called_once()
        trainer.close()
        end.assert_called_once()
    cfg.training.logging.service = "tensorboard"
    with patch("torch.utils.tensorboard.SummaryWriter") as writer:
        trainer = Trainer(cfg, MagicMock(), MagicMock(), {}, {})
        writer.assert_called_once()
        assert trainer.logger is not None
        trainer.close()


def test_reload_best_and_predict(make_config):
    cfg = load_experiment_config(make_config(num_epochs=3, metric_for_best_model="eval_overall_f1"))
    trainer = Trainer.from_config(cfg)
    try:
        trainer.train()
        metrics = trainer.evaluate()
    finally:
        trainer.close()
    predictor = Predictor.from_pretrained(trainer.output_dir / "best_model")
    # identical weights: identical logits
    batch = next(iter(trainer.eval_dataloaders["SwahiliNER"]))
    trainer.model.eval()
    with torch.no_grad():
        a = trainer.model(batch["input_ids"], batch["attention_mask"], task_id="SwahiliNER")["logits"]["ner_head"]
        b = predictor.model(batch["input_ids"], batch["attention_mask"], task_id="SwahiliNER")["logits"]["ner_head"]
    assert torch.allclose(a, b, atol=1e-6)
    out = predictor.predict(["leo amina was nairobi", "kwa baraka sana mombasa"], task="SwahiliNER")
    assert metrics["eval_SwahiliNER_ner_head_f1"] > 0.8
    spans = out[0]["ner_head"]
    assert {(s["entity"], s["text"]) for s in spans} == {("PER", "amina"), ("LOC", "nairobi")}
    assert spans[0]["start"] == 4 and spans[0]["end"] == 9
    sent = predictor.predict("hii ni nzuri sana", task="Sentiment")["sentiment_head"]
    assert sent["label"] in ("negative", "positive") and sum(sent["scores"].values()) == pytest.approx(1.0)


def test_resume_continues_from_last_checkpoint(make_config):
    from trainhub.engine import CheckpointError

    cfg = load_experiment_config(make_config(num_epochs=1))
    first = Trainer.from_config(cfg)
    try:
        first_history = first.train().history
    finally:
        first.close()
    cfg2 = load_experiment_config(make_config(num_epochs=2))
    cfg2.training.output_dir = cfg.training.output_dir
    cfg2.training.resume = True
    cfg2.training.seed = cfg.training.seed + 1  # other batch orders: continuing would silently differ
    other = Trainer.from_config(cfg2)
    try:
        with pytest.raises(CheckpointError, match=r"task sampling differs from this run's \(seed: checkpoint 0"):
            other.train()
    finally:
        other.close()
    cfg2.training.seed = cfg.training.seed
    second = Trainer.from_config(cfg2)
    steps = []
    step = second.objective.training_step
    second.objective.training_step = lambda model, batch: steps.append(1) or step(model, batch)
    try:
        result = second.train()
    finally:
        second.close()
    assert result.state.epoch == 2 and len(result.history) == 2
    assert result.history[0] == first_history[0]  # epoch 0 came from last.ckpt, not from training again
    assert len(steps) == sum(len(dl) for dl in second.train_dataloaders.values())  # one epoch trained
