"""Metrics as functions and as streaming objects (``update`` / ``compute`` / ``reset``)."""

from trainhub.metrics.classification import BinaryAUC, GroupAUC, LogLoss, auc_score, gauc_score, log_loss
from trainhub.metrics.regression import MeanSquaredError, mse_score

__all__ = ["BinaryAUC", "GroupAUC", "LogLoss", "auc_score", "gauc_score", "log_loss", "MeanSquaredError", "mse_score"]
