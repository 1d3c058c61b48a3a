"""PLE (Tang et al., RecSys 2020): progressive layered extraction with customized gate control."""

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
                  n_level=2, n_expert_specific=2, n_expert_shared=1, expert_params={"dims": [16]},
                  tower_params_list=[{"dims": [8]}, {"dims": [8]}])
    return kwargs, toy.batch()


class CGCLevel(nn.Module):
    """One extraction level: task-specific and shared experts, a gate per task, and (except on the
    last level) a shared gate over every expert that feeds the next level's shared experts."""

    def __init__(self, input_dim: int, n_task: int, n_specific: int, n_shared: int, expert_params: dict,
                 last: bool):
        super().__init__()
        self.n_task, self.n_specific, self.last = n_task, n_specific, last
        self.specific = nn.ModuleList(
            nn.ModuleList(hidden_mlp(input_dim, expert_params, "expert_params") for _ in range(n_specific))
            for _ in range(n_task))
        self.shared = nn.ModuleList(hidden_mlp(input_dim, expert_params, "expert_params") for _ in range(n_shared))
        self.output_dim = self.shared[0].output_dim if n_shared else self.specific[0][0].output_dim
        self.task_gates = nn.ModuleList(nn.Linear(input_dim, n_specific + n_shared) for _ in range(n_task))
        self.shared_gate = None if last else nn.Linear(input_dim, n_task * n_specific + n_shared)

    @staticmethod
    def _mix(gate: nn.Linear, gate_input: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(gate(gate_input), dim=-1).unsqueeze(-1)  # [B, E, 1]
        return (weights * experts).sum(dim=1)  # [B, H]

    def _experts(self, task_inputs: list[torch.Tensor], shared_input: torch.Tensor):
        """Each task's specific experts ``[B, S, H]`` and the shared ones ``[B, Sh, H]``, run side by
        side (:func:`stacked_mlps`): all of them at once where every input is the same tensor (the
        first level), else one group per input."""
        groups = [list(experts) for experts in self.specific] + [list(self.shared)]
        if all(inp is shared_input for inp in task_inputs):
            flat = [e for g in groups for e in g]
            out = stacked_mlps(flat, shared_input) if flat else None
            parts = list(out.split([len(g) for g in groups], dim=1)) if out is not None else []
        else:
            parts = [stacked_mlps(g, inp) if g else None for g, inp in zip(groups, [*task_inputs, shared_input])]
        return parts[:-1], parts[-1]

    def forward(self, task_inputs: list[torch.Tensor], shared_input: torch.Tensor):
        specific, shared = self._experts(task_inputs, shared_input)
        task_outputs = [self._mix(gate, inp, _join([spec, shared]))
                        for gate, inp, spec in zip(self.task_gates, task_inputs, specific)]
        if self.shared_gate is None:
            return task_outputs, None
        everything = _join([*specific, shared])  # [B, T*S+Sh, H]
        return task_outputs, self._mix(self.shared_gate, shared_input, everything)


def _join(parts: list[torch.Tensor | None]) -> torch.Tensor:
    present = [p for p in parts if p is not None and p.shape[1]]
    return present[0] if len(present) == 1 else torch.cat(present, dim=1)


@register_model("multitask", _example)
class PLE(MultiTaskRecModel):
    """Progressive Layered Extraction.

    Args:
        features: input features (any kind), embedded and concatenated.
        task_types: ``"classification"`` or ``"regression"`` per task.
        n_level: number of extraction (CGC) levels.
        n_expert_specific: experts per task on each level.
        n_expert_shared: shared experts on each level (at least 1).
        expert_params: MLP keyword arguments of each expert (``dims`` required).
        tower_params_list: one MLP keyword dict per task tower.

    Returns logits ``[B, n_task]``. Shared parameters (what every task's gradient reaches): the
    embedding, every expert and shared gate below the last level, and the last level's shared
    experts; the last shared layer is the output layer of the last level's shared experts.
    """

    def __init__(self, features: Sequence, task_types: Sequence[str], n_level: int, n_expert_specific: int,
                 n_expert_shared: int, expert_params: dict, tower_params_list: Sequence[dict]):
        super().__init__()
        self.features = list(features)
        self.task_types = check_task_types(task_types)
        n_task = len(self.task_types)
        if len(tower_params_list) != n_task:
            raise ValueError(f"tower_params_list has {len(tower_params_list)} entries for {n_task} tasks")
        if n_level < 1 or n_expert_shared < 1 or n_expert_specific < 0:
            raise ValueError(f"PLE needs n_level >= 1 and n_expert_shared >= 1, got n_level={n_level}, "
                             f"n_expert_shared={n_expert_shared}, n_expert_specific={n_expert_specific}")
        self.embedding = EmbeddingCollection(self.features)
        width = sum(f.embed_dim for f in self.features)
        levels = []
        for i in range(n_level):
            levels.append(CGCLevel(width, n_task, n_expert_specific, n_expert_shared, expert_params,
                                   last=i == n_level - 1))
            width = levels[-1].output_dim
        self.cgc_layers = nn.ModuleList(levels)
        self.towers = nn.ModuleList(tower(width, p) for p in tower_params_list)

    def shared_modules(self) -> list[nn.Module]:
        # Below the last level, task-specific experts also feed the shared gate, so all tasks reach them.
        below = [m for level in self.cgc_layers[:-1] for m in (level.specific, level.shared, level.shared_gate)]
        return [self.embedding, *below, self.cgc_layers[-1].shared]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return [last_linear_weight(e) for e in self.cgc_layers[-1].shared]

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(x, self.features, squeeze_dim=True)  # [B, I]
        task_inputs, shared_input = [emb] * len(self.task_types), emb
        for level in self.cgc_layers:
            task_inputs, shared_input = level(task_inputs, shared_input)
        return self.stack_logits([t(inp) for t, inp in zip(self.towers, task_inputs)])  # [B, n_task]
