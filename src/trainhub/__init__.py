"""trainhub: recommendation and multi-task models on one small PyTorch training engine.

Importing the package is light; submodules load on first use.

Example:
    >>> import trainhub
    >>> run = trainhub.load_run("runs/DeepFM-synthetic_ctr")   # a folder written by `trainhub train`
    >>> run.predict("new_rows.parquet")
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_run", "train_run"]


def __getattr__(name: str):
    # Lazy: `import trainhub` must not import torch models, pandas or pydantic.
    if name in ("load_run", "train_run"):
        import trainhub.runs

        return getattr(trainhub.runs, name)
    raise AttributeError(f"module 'trainhub' has no attribute {name!r}")
