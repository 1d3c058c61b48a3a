from trainhub.text.heads import (  # noqa: F401,E501
    MultiHeadSingleLabelClassificationTask,
    MultiLabelClassificationTask,
    SingleLabelClassificationTask,
)
