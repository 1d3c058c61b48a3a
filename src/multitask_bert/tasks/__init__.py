"""``multitask_bert.tasks``: task modules and their registry (see :mod:`trainhub.text.heads`)."""

from trainhub.text.heads import (  # noqa: F401
    TASK_REGISTRY,
    BaseTask,
    MultiHeadSingleLabelClassificationTask,
    MultiLabelClassificationTask,
    NERTask,
    RegressionTask,
    SingleLabelClassificationTask,
)

__all__ = ["TASK_REGISTRY", "BaseTask", "MultiHeadSingleLabelClassificationTask", "MultiLabelClassificationTask",
           "NERTask", "RegressionTask", "SingleLabelClassificationTask"]
