"""``multitask_bert.tasks``: upstream's names for the task heads and their registry (see
:mod:`trainhub.text.heads`, where they are called heads)."""

from trainhub.text.heads import (
    HEAD_REGISTRY,
    MultiLabelClassificationHeads,
    NERHead,
    RegressionHeads,
    SingleLabelClassificationHeads,
    TaskHeads,
)

TASK_REGISTRY = HEAD_REGISTRY
BaseTask = TaskHeads
SingleLabelClassificationTask = SingleLabelClassificationHeads
MultiHeadSingleLabelClassificationTask = SingleLabelClassificationHeads
MultiLabelClassificationTask = MultiLabelClassificationHeads
NERTask = NERHead
RegressionTask = RegressionHeads

__all__ = ["TASK_REGISTRY", "BaseTask", "MultiHeadSingleLabelClassificationTask", "MultiLabelClassificationTask",
           "NERTask", "RegressionTask", "SingleLabelClassificationTask"]
