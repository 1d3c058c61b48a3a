"""``multitask_bert.utils.metrics`` (see :mod:`trainhub.text.metrics`): NER is scored at entity level
with seqeval, as the upstream docs say."""

from trainhub.text.metrics import (  # noqa: F401
    compute_classification_metrics,
    compute_multi_label_metrics,
    compute_ner_metrics,
    compute_regression_metrics,
)

__all__ = ["compute_classification_metrics", "compute_multi_label_metrics", "compute_ner_metrics",
           "compute_regression_metrics"]
