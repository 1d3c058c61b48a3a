"""MMoE (Ma et al., KDD 2018): shared experts mixed by one softmax gate per task."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from trainhub.models import toy
from trainhub.models.multitask.base import MultiTaskRecModel, check_task_types, hidden_mlp, last_linear_weight, tower
from trainhub.models.registry import register_model
from trainhub.nn import EmbeddingCollection
from trainhub.nn.mlp import stacked_mlps


def _example():
    kwargs = dict(features=toy.sparse_features() + toy.dense_features(), task_types=["classification", "regression"],
                  n_expert=3, expert_params={"dims": [16]}, tower_params_list=[{"dims": [8]}, {"dims": [8]}])
    return kwargs, toy.batch()


@register_model("multitask", _example)
class MMOE(MultiTaskRecModel):
    """Multi-gate Mixture-of-Experts.

    Args:
        features: input features (any kind), embedded and concatenated.
        task_types: ``"classification"`` or ``"regression"`` per task.
        n_expert: number of shared experts.
        expert_params: MLP keyword arguments of each expert (``dims`` required).
        tower_params_list: one MLP keyword dict per task tower.

    Each gate is ``softmax(Linear(input))`` over the experts (Torch-RecHub puts a BatchNorm before
    the softmax; it is left out here so that a gate is the paper's plain softmax). Returns logits
    ``[B, n_task]``.
    """

    def __init__(self, features: Sequence, task_types: Sequence[str], n_expert: int, expert_params: dict,
                 tower_params_list: Sequence[dict]):
        super().__init__()
        self.features = list(features)
        self.task_types = check_task_types(task_types)
        if len(tower_params_list) != len(self.task_types):
            raise ValueError(f"tower_params_list has {len(tower_params_list)} entries for {len(self.task_types)} tasks")
        if n_expert < 1:
            raise ValueError(f"n_expert must be >= 1, got {n_expert}")
        self.n_expert = n_expert
        self.embedding = EmbeddingCollection(self.features)
        input_dim = sum(f.embed_dim for f in self.features)
        self.experts = nn.ModuleList(hidden_mlp(input_dim, expert_params, "expert_params") for _ in range(n_expert))
        self.gates = nn.ModuleList(nn.Linear(input_dim, n_expert) for _ in self.task_types)
        expert_dim = self.experts[0].output_dim
        self.towers = nn.ModuleList(tower(expert_dim, p) for p in tower_params_list)

    def shared_modules(self) -> list[nn.Module]:
        return [self.embedding, self.experts]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return [last_linear_weight(e) for e in self.experts]

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(x, self.features, squeeze_dim=True)  # [B, I]
        experts = stacked_mlps(self.experts, emb)  # [B, E, H], every expert side by side
        logits = []
        for gate, head in zip(self.gates, self.towers):
            weights = torch.softmax(gate(emb), dim=-1).unsqueeze(-1)  # [B, E, 1]
            logits.append(head((weights * experts).sum(dim=1)))  # [B, 1]
        return self.stack_logits(logits)  # [B, n_task]
