"""Multi-task models. Each returns logits ``[B, n_task]`` (raw values for regression tasks) and
declares its shared parameters; see :mod:`trainhub.models.multitask.base`."""

from trainhub.models.multitask.aitm import AITM
from trainhub.models.multitask.base import MultiTaskRecModel
from trainhub.models.multitask.esmm import ESMM
from trainhub.models.multitask.mmoe import MMOE
from trainhub.models.multitask.ple import PLE
from trainhub.models.multitask.sharedbottom import SharedBottom

__all__ = ["AITM", "ESMM", "MMOE", "MultiTaskRecModel", "PLE", "SharedBottom"]
