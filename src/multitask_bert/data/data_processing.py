"""``multitask_bert.data.data_processing``: :class:`DataProcessor` (see :mod:`trainhub.text.processing`)."""

from trainhub.text.processing import (  # noqa: F401
    DataProcessor,
    TaskCollator,
    TextDataset,
    align_labels_to_tokens,
    build_label_maps,
)

__all__ = ["DataProcessor", "TaskCollator", "TextDataset", "align_labels_to_tokens", "build_label_maps"]
