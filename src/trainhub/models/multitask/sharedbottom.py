"""Shared-Bottom multi-task model (Caruana, 1997): one bottom MLP, one tower per task."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from trainhub.models import toy
from trainhub.models.multitask.base import MultiTaskRecModel, check_task_types, hidden_mlp, last_linear_weight, tower
from trainhub.models.registry import register_model
from trainhub.nn import EmbeddingCollection


def _example():
    kwargs = dict(features=toy.sparse_features() + toy.dense_features() + toy.history_features(),
                  task_types=["classification", "regression"], bottom_params={"dims": [16]},
                  tower_params_list=[{"dims": [8]}, {"dims": [8]}])
    return kwargs, toy.batch()


@register_model("multitask", _example)
class SharedBottom(MultiTaskRecModel):
    """Shared-Bottom.

    Args:
        features: input features (any kind), embedded and concatenated.
        task_types: ``"classification"`` or ``"regression"`` per task.
        bottom_params: :class:`trainhub.nn.MLP` keyword arguments of the shared bottom (``dims`` required).
        tower_params_list: one MLP keyword dict per task tower.

    Returns logits ``[B, n_task]`` (raw values for regression tasks).

    Example:
        >>> model = SharedBottom(features, ["classification", "classification"], {"dims": [64]},
        ...                      [{"dims": [32]}, {"dims": [32]}])
    """

    def __init__(self, features: Sequence, task_types: Sequence[str], bottom_params: dict,
                 tower_params_list: Sequence[dict]):
        super().__init__()
        self.features = list(features)
        self.task_types = check_task_types(task_types)
        if len(tower_params_list) != len(self.task_types):
            raise ValueError(f"tower_params_list has {len(tower_params_list)} entries for {len(self.task_types)} tasks")
        self.embedding = EmbeddingCollection(self.features)
        input_dim = sum(f.embed_dim for f in self.features)
        self.bottom = hidden_mlp(input_dim, bottom_params, "bottom_params")
        self.towers = nn.ModuleList(tower(self.bottom.output_dim, p) for p in tower_params_list)

    def shared_modules(self) -> list[nn.Module]:
        return [self.embedding, self.bottom]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return [last_linear_weight(self.bottom)]

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        shared = self.bottom(self.embedding(x, self.features, squeeze_dim=True))  # [B, H]
        return self.stack_logits([t(shared) for t in self.towers])  # [B, n_task]
