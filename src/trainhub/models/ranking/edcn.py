"""EDCN (Chen et al., 2021): a cross network and an MLP run in parallel and share information
layer by layer through bridge and regulation modules."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.models import toy
from trainhub.models.registry import register_model
from trainhub.nn import LR, MLP, EmbeddingCollection

BRIDGE_TYPES = ("hadamard_product", "pointwise_addition", "concatenation", "attention_pooling")


def _example():
    features = toy.sparse_features() + toy.dense_features() + toy.history_features()
    kwargs = dict(features=features, n_cross_layers=2, mlp_params={"dropout": 0.1},
                  bridge_type="attention_pooling", temperature=0.5)
    return kwargs, toy.batch()


class BridgeModule(nn.Module):
    """Fuse the cross output ``x`` and the deep output ``h`` (both ``[B, D]``) into ``[B, D]``."""

    def __init__(self, input_dim: int, bridge_type: str = "hadamard_product"):
        super().__init__()
        if bridge_type not in BRIDGE_TYPES:
            raise ValueError(f"bridge_type must be one of {BRIDGE_TYPES}, got {bridge_type!r}")
        self.bridge_type = bridge_type
        if bridge_type == "concatenation":
            self.fuse = nn.Sequential(nn.Linear(2 * input_dim, input_dim), nn.ReLU())
        elif bridge_type == "attention_pooling":
            self.attend_x = self._attention(input_dim)
            self.attend_h = self._attention(input_dim)

    @staticmethod
    def _attention(dim: int) -> nn.Module:
        return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim, bias=False), nn.Softmax(dim=-1))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.bridge_type == "hadamard_product":
            return x * h
        if self.bridge_type == "pointwise_addition":
            return x + h
        if self.bridge_type == "concatenation":
            return self.fuse(torch.cat([x, h], dim=-1))
        return self.attend_x(x) * x + self.attend_h(h) * h


class RegulationModule(nn.Module):
    """Field-wise gates that give the cross and the deep branch their own view of the input.

    Each branch has one logit per field; the gates are ``F * softmax(logits / temperature)`` over
    fields (the factor ``F`` makes the initial, uniform gate the identity) and each field's gate
    multiplies all of that field's dimensions. Without regulation both branches get the input.
    """

    def __init__(self, field_dims: list[int], temperature: float = 1.0, use_regulation: bool = True):
        super().__init__()
        self.use_regulation = use_regulation
        self.temperature = temperature
        self.register_buffer("field_index", torch.repeat_interleave(torch.arange(len(field_dims)),
                                                                    torch.tensor(field_dims)), persistent=False)
        if use_regulation:
            self.cross_logits = nn.Parameter(torch.ones(len(field_dims)))
            self.deep_logits = nn.Parameter(torch.ones(len(field_dims)))

    def _gate(self, logits: torch.Tensor) -> torch.Tensor:
        gate = len(logits) * torch.softmax(logits / self.temperature, dim=0)  # [F]
        return gate[self.field_index]  # [D], one value per input dimension

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.use_regulation:
            return x, x
        return x * self._gate(self.cross_logits), x * self._gate(self.deep_logits)


@register_model("ranking", _example)
class EDCN(nn.Module):
    """EDCN.

    Args:
        features: every input feature (concatenated into one ``[B, D]`` vector).
        n_cross_layers: number of cross layers (each paired with one deep layer and one bridge).
        mlp_params: ``dropout``/``activation``/``batch_norm`` of the deep layers. Each deep layer
            keeps the input width ``D`` (the bridges need equal widths), so ``dims`` is ignored,
            as it is in Torch-RecHub (which overwrites it; the dict given here is not modified).
        bridge_type: ``"hadamard_product"``, ``"pointwise_addition"``, ``"concatenation"`` or
            ``"attention_pooling"``.
        use_regulation_module: gate fields separately for each branch.
        temperature: softmax temperature of the regulation gates.

    Returns logits ``[B]``.
    """

    def __init__(self, features, n_cross_layers, mlp_params, bridge_type="hadamard_product",
                 use_regulation_module=True, temperature=1):
        super().__init__()
        if n_cross_layers < 1:
            raise ValueError(f"n_cross_layers must be >= 1, got {n_cross_layers}")
        self.features = list(features)
        self.n_cross_layers = n_cross_layers
        field_dims = [f.embed_dim for f in self.features]
        self.dims = dims = sum(field_dims)
        deep_params = {k: v for k, v in dict(mlp_params or {}).items() if k not in ("dims", "output_layer")}
        self.embedding = EmbeddingCollection(self.features)
        self.regulation = nn.ModuleList(
            RegulationModule(field_dims, temperature, use_regulation_module) for _ in range(n_cross_layers))
        self.cross_w = nn.ModuleList(nn.Linear(dims, 1, bias=False) for _ in range(n_cross_layers))
        self.cross_b = nn.ParameterList(nn.Parameter(torch.zeros(dims)) for _ in range(n_cross_layers))
        self.deep = nn.ModuleList(
            MLP(dims, output_layer=False, dims=[dims], **deep_params) for _ in range(n_cross_layers))
        self.bridges = nn.ModuleList(BridgeModule(dims, bridge_type) for _ in range(n_cross_layers))
        self.linear = LR(3 * dims)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        embed = self.embedding(x, self.features, squeeze_dim=True)  # [B, D]
        cross, deep = self.regulation[0](embed)
        cross_0 = bridge = cross
        for i in range(self.n_cross_layers):
            if i > 0:  # later layers start from the previous bridge, re-gated per branch
                cross, deep = self.regulation[i](bridge)
            cross = cross_0 * self.cross_w[i](cross) + self.cross_b[i] + cross
            deep = self.deep[i](deep)
            bridge = self.bridges[i](cross, deep)
        return self.linear(torch.cat([cross, deep, bridge], dim=1)).squeeze(1)
