"""Metrics as functions and as streaming objects (``update`` / ``compute`` / ``reset``)."""

from trainhub.metrics.classification import BinaryAUC, GroupAUC, LogLoss, auc_score, gauc_score, log_loss
from trainhub.metrics.ranking import (
    RankingMetrics,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    topk_metrics,
)
from trainhub.metrics.regression import MeanSquaredError, mse_score

__all__ = ["BinaryAUC", "GroupAUC", "LogLoss", "auc_score", "gauc_score", "log_loss", "MeanSquaredError", "mse_score",
           "RankingMetrics", "hit_rate_at_k", "mrr_at_k", "ndcg_at_k", "precision_at_k", "recall_at_k", "topk_metrics"]
