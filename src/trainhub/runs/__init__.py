"""Config-driven runs of the recommendation trainers, and run folders that reload.

Example:
    >>> from trainhub.runs import train_run, load_run
    >>> result = train_run("examples/configs/deepfm_ctr.yaml", ["trainer.n_epoch=2"])
    >>> run = load_run(result.run_dir)
    >>> run.predict("new_rows.parquet")
"""

from trainhub.runs.config import ConfigError, RunConfig, load_run_config
from trainhub.runs.datasets import list_datasets, load_dataset
from trainhub.runs.folder import Run, export_embeddings, load_run
from trainhub.runs.train import RunResult, train_run

__all__ = ["ConfigError", "Run", "RunConfig", "RunResult", "export_embeddings", "list_datasets", "load_dataset",
           "load_run", "load_run_config", "train_run"]
