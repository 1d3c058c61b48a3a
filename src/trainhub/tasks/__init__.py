"""Tasks: how a batch becomes a loss and how validation batches become metrics."""

from trainhub.tasks.ctr import CTRTask, check_binary_labels, split_batch
from trainhub.tasks.regularization import Regularization

__all__ = ["CTRTask", "Regularization", "check_binary_labels", "split_batch"]
