"""trainhub: recommendation and multi-task models on one small PyTorch training engine.

Importing the package is light; submodules load on first use.

Example:
    >>> import trainhub
    >>> trainhub.seed_everything(0)   # before building the model: its initial weights are random
    >>> run = trainhub.load_run("runs/DeepFM-synthetic_ctr")   # a folder written by `trainhub train`
    >>> run.predict("new_rows.parquet")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "seed_everything", "load_run", "train_run"]


def __getattr__(name: str) -> Any:
    # Lazy: `import trainhub` must not import torch, models, pandas or pydantic.
    if name == "seed_everything":
        from trainhub.engine.runtime import seed_everything

        return seed_everything
    if name in ("load_run", "train_run"):
        import trainhub.runs

        return getattr(trainhub.runs, name)
    raise AttributeError(f"module 'trainhub' has no attribute {name!r}")
