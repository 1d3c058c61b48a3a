"""AITM (Xi et al., KDD 2021): adaptive information transfer between sequential conversion tasks.

Task ``t`` sees, besides its own bottom representation, information transferred from task
``t-1`` (``info_gates``), mixed by a two-item self-attention (``aits``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from trainhub.models import toy
from trainhub.models.multitask.base import MultiTaskRecModel, hidden_mlp, tower
from trainhub.models.registry import register_model
from trainhub.nn import MLP, EmbeddingCollection


def _example():
    kwargs = dict(features=toy.sparse_features() + toy.dense_features(), n_task=3, bottom_params={"dims": [16]},
                  tower_params_list=[{"dims": [8]}] * 3)
    return kwargs, toy.batch()


class TransferAttention(nn.Module):
    """Scaled dot-product attention over the two items ``[own, transferred]``: ``[B, 2, D] -> [B, D]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        scores = (self.query(items) * self.key(items)).sum(-1) * self.scale  # [B, 2]
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)  # [B, 2, 1]
        return (weights * self.value(items)).sum(dim=1)  # [B, D]


@register_model("multitask", _example)
class AITM(MultiTaskRecModel):
    """Adaptive Information Transfer Multi-task model (binary tasks in funnel order).

    Args:
        features: input features (any kind), embedded and concatenated.
        n_task: number of binary tasks, ordered along the conversion funnel.
        bottom_params: MLP keyword arguments of each task's bottom (``dims`` required).
        tower_params_list: one MLP keyword dict per task tower.

    Returns logits ``[B, n_task]``. The tasks share only the embedding (its tables are the last
    shared layer). The paper's behavioural-expectation calibrator loss is not included.
    """

    def __init__(self, features: Sequence, n_task: int, bottom_params: dict, tower_params_list: Sequence[dict]):
        super().__init__()
        if n_task < 1:
            raise ValueError(f"n_task must be >= 1, got {n_task}")
        if len(tower_params_list) != n_task:
            raise ValueError(f"tower_params_list has {len(tower_params_list)} entries for {n_task} tasks")
        self.features = list(features)
        self.n_task = n_task
        self.task_types = ["classification"] * n_task
        self.embedding = EmbeddingCollection(self.features)
        input_dim = sum(f.embed_dim for f in self.features)
        self.bottoms = nn.ModuleList(hidden_mlp(input_dim, bottom_params, "bottom_params") for _ in range(n_task))
        dim = self.bottoms[0].output_dim
        self.info_gates = nn.ModuleList(MLP(dim, output_layer=False, dims=[dim]) for _ in range(n_task - 1))
        self.aits = nn.ModuleList(TransferAttention(dim) for _ in range(n_task - 1))
        self.towers = nn.ModuleList(tower(dim, p) for p in tower_params_list)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(x, self.features, squeeze_dim=True)  # [B, I]
        reps = [bottom(emb) for bottom in self.bottoms]  # n_task x [B, D]
        for t in range(1, self.n_task):
            transferred = self.info_gates[t - 1](reps[t - 1])  # [B, D]
            reps[t] = self.aits[t - 1](torch.stack([reps[t], transferred], dim=1))
        return self.stack_logits([head(r) for head, r in zip(self.towers, reps)])  # [B, n_task]
