"""Datasets a run config can name (``dataset: {name: synthetic_ctr}``).

Each entry builds train/validation/test frames and says what its columns are, so a config
needs only the model and the trainer. All of them come with the repository: synthetic data
(learnable, generated from a seed) and the small Torch-RecHub samples in ``examples/data``.

Example:
    >>> frames = load_dataset("synthetic_ctr", rows=2000)
    >>> sorted(frames)
    ['test', 'train', 'val']
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from trainhub.data import synthetic

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NamedDataset", "list_datasets", "get_dataset", "load_dataset", "register_dataset"]


@dataclass(frozen=True)
class NamedDataset:
    """A dataset by name: ``build(**params)`` gives ``{"train", "val", "test"}`` frames (``val``
    and ``test`` may be missing: the run config's ``split`` then cuts them from ``train``);
    ``columns`` are the ``dataset`` keys it fills in (label, sparse, dense, sequence, groups...)."""

    name: str
    description: str
    build: Callable[..., dict]
    columns: dict = field(default_factory=dict)


_REGISTRY: dict[str, NamedDataset] = {}


def register_dataset(entry: NamedDataset) -> NamedDataset:
    _REGISTRY[entry.name] = entry
    return entry


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def get_dataset(name: str) -> NamedDataset:
    if name not in _REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; named datasets: {', '.join(list_datasets())} "
                       "(or give files with dataset.train)")
    return _REGISTRY[name]


def load_dataset(name: str, **params: Any) -> dict[str, "pd.DataFrame"]:
    """The frames of a named dataset; ``params`` go to its builder (e.g. ``rows``, ``seed``)."""
    entry = get_dataset(name)
    accepted = inspect.signature(entry.build).parameters
    unknown = [k for k in params if k not in accepted]
    if unknown:
        raise ValueError(f"dataset {name!r} takes no parameter {unknown[0]!r}; it takes {', '.join(accepted)}")
    return entry.build(**params)


_CTR_COLUMNS = {
    "sparse": ["user_id", "item_id", "cate_id", "city", "device", "hour"],
    "dense": ["price", "age"],
}

register_dataset(NamedDataset(
    "synthetic_ctr", "clicks from a known logistic model (user/item biases, user-category affinity, "
    "low-rank interaction); 50,000 rows by default; its own probabilities score test AUC 0.82",
    synthetic.synthetic_ctr, {"label": "label", **_CTR_COLUMNS}))

register_dataset(NamedDataset(
    "synthetic_multitask", "the synthetic_ctr columns with two related labels, click and purchase",
    synthetic.synthetic_multitask, {"label": ["click", "purchase"], **_CTR_COLUMNS}))

register_dataset(NamedDataset(
    "synthetic_sequence", "clicks that depend on the candidate's category in the user's recent history "
    "(hist_item_id / hist_cate_id); for DIN, BST, DIEN",
    synthetic.synthetic_sequence,
    {"label": "label", "sparse": ["user_id", "item_id", "cate_id"],
     "sequence": {"hist_item_id": {"vocab": "item_id", "pooling": "concat", "max_len": 10},
                  "hist_cate_id": {"vocab": "cate_id", "pooling": "concat", "max_len": 10}},
     "groups": {"history": ["hist_item_id", "hist_cate_id"], "target": ["item_id", "cate_id"],
                "profile": ["user_id"]}}))

register_dataset(NamedDataset(
    "synthetic_matching", "user-item interactions from latent tastes, leave-last-out split; "
    "for YoutubeDNN, DSSM and other two-tower models",
    synthetic.synthetic_matching,
    {"sparse": ["user_id", "age_group", "item_id", "cate_id"],
     "sequence": {"hist_item_id": {"vocab": "item_id", "pooling": "mean", "max_len": 10}},
     "groups": {"user": ["age_group", "hist_item_id"], "item": ["item_id", "cate_id"]},
     "user_id": "user_id", "item_id": "item_id", "item_columns": ["item_id", "cate_id"]}))


register_dataset(NamedDataset(
    "synthetic_interactions", "an interaction log (user_id, item_id, timestamp) in which each user walks "
    "through a cluster of items, so the next item follows from the last; for HSTU, SASRec and other "
    "next-item models",
    synthetic.synthetic_interactions,
    {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp"}))


def _examples_data() -> Path:
    return Path(__file__).resolve().parents[3] / "examples" / "data"


def _criteo_sample() -> dict[str, "pd.DataFrame"]:
    import pandas as pd

    path = _examples_data() / "criteo_sample.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not there; the criteo_sample dataset ships with the source repository")
    return {"train": pd.read_csv(path)}


register_dataset(NamedDataset(
    "criteo_sample", "Torch-RecHub's 115-row Criteo sample (examples/data/criteo_sample.csv): a format "
    "check, far too small to learn from",
    _criteo_sample,
    {"label": "label", "sparse": [f"C{i}" for i in range(1, 27)], "dense": [f"I{i}" for i in range(1, 14)]}))
