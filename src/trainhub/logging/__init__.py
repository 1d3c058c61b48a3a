"""Metric loggers behind one small interface; several can run together.

Example:
    >>> logger = build_logger(["stdout", "csv", "tensorboard", "mlflow"], save_dir="runs/demo")
    >>> logger.log_metrics({"val/auc": 0.71}, step=0)
    >>> logger.close()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from trainhub.logging.base import MetricLogger, MultiLogger, flatten_params
from trainhub.logging.csv import CSVLogger
from trainhub.logging.stdout import StdoutLogger

__all__ = ["MetricLogger", "MultiLogger", "CSVLogger", "StdoutLogger", "build_logger", "flatten_params"]

LOGGER_NAMES = ("stdout", "csv", "tensorboard", "mlflow")


def _build_one(name: str, save_dir: Path, experiment_name: str, tracking_uri: str | None, run_name: str | None,
               artifact_dir: Path | None = None):
    if name == "stdout":
        return StdoutLogger()
    if name == "csv":
        return CSVLogger(save_dir)
    if name == "tensorboard":
        from trainhub.logging.tensorboard import TensorBoardLogger

        return TensorBoardLogger(save_dir / "tensorboard")
    if name == "mlflow":
        from trainhub.logging.mlflow import MLflowLogger

        return MLflowLogger(save_dir, experiment_name=experiment_name, run_name=run_name, tracking_uri=tracking_uri,
                            artifact_dir=artifact_dir)
    raise ValueError(f"unknown logger {name!r}; choose from {', '.join(LOGGER_NAMES)}")


def build_logger(
    loggers: str | Iterable[Any] | None,
    save_dir: str | Path = "runs",
    experiment_name: str = "trainhub",
    tracking_uri: str | None = None,
    run_name: str | None = None,
    artifact_dir: str | Path | None = None,
) -> MultiLogger:
    """Build a :class:`MultiLogger` from names (``"stdout"``, ``"csv"``, ``"tensorboard"``,
    ``"mlflow"``; a comma-separated string works too) and/or ready logger objects.
    ``run_name`` names the MLflow run; ``artifact_dir`` is where MLflow's embedded store keeps
    artifacts (default ``<save_dir>/mlartifacts``)."""
    if loggers is None:
        return MultiLogger([])
    if isinstance(loggers, str):
        loggers = [s.strip() for s in loggers.split(",") if s.strip()]
    elif not isinstance(loggers, (list, tuple)):
        loggers = [loggers]
    save_dir = Path(save_dir)
    built = [
        _build_one(item, save_dir, experiment_name, tracking_uri, run_name, artifact_dir)
        if isinstance(item, str) else item
        for item in loggers
    ]
    return MultiLogger(built)
