from multitask_bert.tasks import (  # noqa: F401
    MultiHeadSingleLabelClassificationTask,
    MultiLabelClassificationTask,
    SingleLabelClassificationTask,
)
