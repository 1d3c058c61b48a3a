import csv

import pytest

from trainhub.logging import CSVLogger, MultiLogger, build_logger, flatten_params


def test_csv_logger_long_format(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"train/loss": 0.5, "val/auc": 0.7}, step=0)
    logger.log_metrics({"train/loss": 0.4}, step=1)
    logger.log_params({"lr": 0.01})
    logger.close()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [(r["step"], r["name"], float(r["value"])) for r in rows] == [
        ("0", "train/loss", 0.5), ("0", "val/auc", 0.7), ("1", "train/loss", 0.4)]
    assert '"lr": 0.01' in (tmp_path / "params.json").read_text()


def test_tensorboard_logger_writes_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = build_logger(["tensorboard"], save_dir=tmp_path)
    for step in range(3):
        logger.log_metrics({"val/auc": 0.5 + step / 10}, step=step)
    logger.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    events = acc.Scalars("val/auc")
    assert [e.step for e in events] == [0, 1, 2]
    assert events[-1].value == pytest.approx(0.7)


def test_mlflow_logger_uses_local_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written to the working directory
    from mlflow.tracking import MlflowClient

    logger = build_logger(["mlflow"], save_dir=tmp_path / "run", experiment_name="exp")
    logger.log_params({"lr": 0.01, "model": "DeepFM"})
    logger.log_metrics({"val/auc": 0.61}, step=0)
    logger.log_metrics({"val/auc": 0.65}, step=1)
    (tmp_path / "note.txt").write_text("hi")
    logger.log_artifact(str(tmp_path / "note.txt"))
    inner = logger.loggers[0]
    logger.close()
    logger.close()  # safe twice
    client = MlflowClient(f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
    run = client.get_run(inner.run_id)
    assert run.data.params == {"lr": "0.01", "model": "DeepFM"}
    history = client.get_metric_history(inner.run_id, "val/auc")
    assert [(m.step, m.value) for m in history] == [(0, 0.61), (1, 0.65)]
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(inner.run_id)] == ["note.txt"]
    assert not (tmp_path / "mlruns").exists()


def test_multilogger_accepts_torch_rechub_style_loggers():
    calls = []

    class Legacy:
        def log_metrics(self, metrics, step):
            calls.append(("metrics", step))

        def log_hyperparams(self, params):
            calls.append(("params", params["a"]))

        def finish(self):
            calls.append(("finish",))

    logger = MultiLogger([Legacy()])
    logger.log_params({"a": 1})
    logger.log_metrics({"x": 1.0}, step=3)
    logger.close()
    logger.close()
    assert calls == [("params", 1), ("metrics", 3), ("finish",)]


def test_unknown_logger_and_flatten():
    with pytest.raises(ValueError, match="unknown logger 'wandb'"):
        build_logger("wandb")
    assert flatten_params({"a": {"b": 1, "c": [1, 2]}}) == {"a.b": 1, "a.c": "[1, 2]"}
