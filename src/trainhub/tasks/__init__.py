"""Tasks: how a batch becomes a loss and how validation batches become metrics."""

from trainhub.tasks.ctr import CTRTask, check_binary_labels, split_batch
from trainhub.tasks.match import (
    InBatchNegatives,
    ListwiseSoftmax,
    MatchTask,
    PairwiseBPR,
    PointwiseBCE,
    objective_for_mode,
)
from trainhub.tasks.multitask import MTLStepOutput, MTLTask
from trainhub.tasks.regularization import Regularization, RegularizationLoss
from trainhub.tasks.rqvae import RQVAETask
from trainhub.tasks.seq import FullSoftmaxLoss, NextItemTask, SampledSoftmaxLoss, build_seq_loss
from trainhub.tasks.tiger import TIGERTask
from trainhub.tasks.weighting import (
    EqualWeighting,
    GradNorm,
    LossWeighting,
    MetaBalance,
    UncertaintyWeighting,
    build_weighting,
)

__all__ = ["CTRTask", "Regularization", "RegularizationLoss", "check_binary_labels", "split_batch",
           "MTLTask", "MTLStepOutput", "LossWeighting", "EqualWeighting", "UncertaintyWeighting",
           "GradNorm", "MetaBalance", "build_weighting",
           "MatchTask", "PointwiseBCE", "PairwiseBPR", "ListwiseSoftmax", "InBatchNegatives", "objective_for_mode",
           "NextItemTask", "FullSoftmaxLoss", "SampledSoftmaxLoss", "build_seq_loss",
           "RQVAETask", "TIGERTask"]
