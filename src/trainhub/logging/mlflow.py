"""MLflow tracking (extra: ``mlflow``).

By default the store is an embedded SQLite database in the run's output folder
(``<save_dir>/mlflow.db``, artifacts under ``<save_dir>/mlartifacts``): nothing contacts a
server or the network unless ``tracking_uri`` is given.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

__all__ = ["MLflowLogger", "import_mlflow"]


def import_mlflow():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow
    except ImportError as err:
        raise ImportError("MLflow logging needs the 'mlflow' package: pip install 'trainhub[mlflow]'") from err
    return mlflow


def default_tracking_uri(save_dir: str | Path) -> str:
    return f"sqlite:///{Path(save_dir).resolve() / 'mlflow.db'}"


class MLflowLogger:
    """Log params, metrics and artifacts to one MLflow run.

    Args:
        save_dir: folder of the embedded store when ``tracking_uri`` is None.
        experiment_name: MLflow experiment (created when missing).
        run_name: optional run name.
        tracking_uri: e.g. ``http://host:5000``; None for the embedded local store.
        artifact_dir: folder of the embedded store's artifacts (default ``<save_dir>/mlartifacts``);
            a config run that trains in a staging folder points it at the final folder.
    """

    def __init__(self, save_dir: str | Path, experiment_name: str = "trainhub", run_name: str | None = None,
                 tracking_uri: str | None = None, artifact_dir: str | Path | None = None):
        mlflow = import_mlflow()
        self._mlflow = mlflow
        self.save_dir = Path(save_dir)
        self.save_dir.mkdir(parents=True, exist_ok=True)
        self._embedded = tracking_uri is None
        self.tracking_uri = tracking_uri or default_tracking_uri(self.save_dir)
        mlflow.set_tracking_uri(self.tracking_uri)
        if mlflow.get_experiment_by_name(experiment_name) is None:
            folder = Path(artifact_dir) if artifact_dir is not None else self.save_dir / "mlartifacts"
            artifacts = None if tracking_uri else folder.resolve().as_uri()
            mlflow.create_experiment(experiment_name, artifact_location=artifacts)
        mlflow.set_experiment(experiment_name)
        self.run = mlflow.start_run(run_name=run_name)
        self.run_id = self.run.info.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self._mlflow.MlflowClient(self.tracking_uri).log_batch(self.run_id, metrics=batch)

    def log_params(self, params: dict[str, Any]) -> None:
        self._mlflow.log_params({k: str(v)[:6000] for k, v in params.items()}, run_id=self.run_id)

    def log_artifact(self, path: str | Path) -> None:
        path = Path(path)
        client = self._mlflow.MlflowClient(self.tracking_uri)
        if path.is_dir():
            client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
        else:
            client.log_artifact(self.run_id, str(path))

    def relocate(self, save_dir: str | Path) -> None:
        """The embedded store's folder moved (a staging folder became the run folder): follow it."""
        if not self._embedded:
            return
        self.save_dir = Path(save_dir)
        self.tracking_uri = default_tracking_uri(self.save_dir)
        self._mlflow.set_tracking_uri(self.tracking_uri)

    def state_dict(self) -> dict[str, str]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, str]) -> None:
        """A resumed run goes on logging into the MLflow run it started (the one this process
        opened, still empty but for params, is deleted)."""
        old = state.get("run_id")
        if not old or old == self.run_id:
            return
        client = self._mlflow.MlflowClient(self.tracking_uri)
        try:
            client.get_run(old)
        except Exception:  # noqa: BLE001 - another store: keep the new run
            return
        params = client.get_run(self.run_id).data.params
        self._mlflow.end_run()
        client.delete_run(self.run_id)
        self.run = self._mlflow.start_run(run_id=old)
        self.run_id = old
        known = client.get_run(old).data.params
        fresh = {k: v for k, v in params.items() if k not in known}
        if fresh:
            self._mlflow.log_params(fresh, run_id=old)

    def close(self) -> None:
        if self.run is not None:
            self._mlflow.end_run()
            self.run = None
