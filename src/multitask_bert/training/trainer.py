"""``multitask_bert.training.trainer``: :class:`Trainer` (see :mod:`trainhub.text.trainer`)."""

from trainhub.text.metrics import (  # noqa: F401
    compute_classification_metrics,
    compute_multi_label_metrics,
    compute_ner_metrics,
)
from trainhub.text.processing import classification_collate_fn, ner_collate_fn  # noqa: F401
from trainhub.text.trainer import Trainer  # noqa: F401

__all__ = ["Trainer", "classification_collate_fn", "ner_collate_fn", "compute_classification_metrics",
           "compute_multi_label_metrics", "compute_ner_metrics"]
