"""Row-wise optimizers for row-sparse embedding tables, and the hybrid optimizer the trainers build."""

from trainhub.optim.hybrid import (
    HybridOptimizer,
    build_optimizer,
    clip_grad_norm_,
    rowwise_rule,
    set_sparse_embeddings,
)
from trainhub.optim.rowwise import RowWiseAdagrad, RowWiseAdam, RowWiseOptimizer, RowWiseSGD, row_grad

__all__ = [
    "HybridOptimizer",
    "build_optimizer",
    "clip_grad_norm_",
    "rowwise_rule",
    "set_sparse_embeddings",
    "RowWiseOptimizer",
    "RowWiseAdam",
    "RowWiseAdagrad",
    "RowWiseSGD",
    "row_grad",
]
