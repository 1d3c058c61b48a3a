"""Feature-interaction layers: linear (LR), factorization machine, and the DCN cross networks."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.nn.fused_table import is_tracing

__all__ = ["LR", "FM", "CrossNetwork", "CrossNetV2", "CrossNetMix"]


class LR(nn.Module):
    """Logistic-regression part: ``[B, D] -> [B, 1]`` (a linear layer, bias optional)."""

    def __init__(self, input_dim: int, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(input_dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class FM(nn.Module):
    """Second-order factorization machine over field embeddings: ``[B, F, D] -> [B, 1]``
    (or ``[B, D]`` with ``reduce_sum=False``), using the ``(sum^2 - sum of squares) / 2`` identity."""

    def __init__(self, reduce_sum: bool = True):
        super().__init__()
        self.reduce_sum = reduce_sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reduce_sum and x.dim() == 3 and x.requires_grad and torch.is_grad_enabled() and not is_tracing():
            return _FMSum.apply(x)[0]
        total = x.sum(dim=1)  # [B, D]
        if self.reduce_sum:  # products and sums: cheaper backward passes than pow
            return 0.5 * ((total * total).sum(dim=1, keepdim=True) - (x * x).sum(dim=(1, 2)).unsqueeze(1))
        return 0.5 * (total * total - (x * x).sum(dim=1))


class _FMSum(torch.autograd.Function):
    """``FM(reduce_sum=True)`` with its gradient in one pass: ``d/dx_f = g * (sum_f x - x_f)``
    (autograd's form takes four passes over ``[B, F, D]``). The backward pass is made of
    differentiable operations on ``x``, so second derivatives and ``torch.func`` transforms see the
    same function as the plain form."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        total = x.sum(dim=1)  # [B, D]
        out = 0.5 * ((total * total).sum(dim=1, keepdim=True) - (x * x).sum(dim=(1, 2)).unsqueeze(1))
        return out, total

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(inputs[0], output[1])

    @staticmethod
    def backward(ctx, grad, _):
        x, total = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a second derivative must see the sum depend on x
            total = x.sum(dim=1)
        return torch.addcmul((grad * total).unsqueeze(1), x, grad.reshape(-1, 1, 1), value=-1)


class CrossNetwork(nn.Module):
    """DCN cross layers: ``x_{l+1} = x_0 * (x_l . w_l) + b_l + x_l`` on ``[B, D]``."""

    def __init__(self, input_dim: int, num_layers: int):
        super().__init__()
        self.w = nn.ModuleList(nn.Linear(input_dim, 1, bias=False) for _ in range(num_layers))
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(input_dim)) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = x
        for w, b in zip(self.w, self.b):
            x = x0 * w(x) + b + x
        return x


class CrossNetV2(nn.Module):
    """DCN-V2 full-rank cross layers: ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l``."""

    def __init__(self, input_dim: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(input_dim, input_dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = x
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class CrossNetMix(nn.Module):
    """DCN-V2 low-rank mixture of cross experts.

    Each expert projects ``x_l`` to rank ``low_rank`` (``V``), mixes it (``C``) and projects back
    (``U``); a softmax gate over ``x_l`` weights the experts.
    """

    def __init__(self, input_dim: int, num_layers: int = 2, low_rank: int = 32, num_experts: int = 4):
        super().__init__()
        self.num_layers = num_layers
        # [layers, experts, D, r] / [layers, experts, r, r]
        self.U = nn.Parameter(torch.empty(num_layers, num_experts, input_dim, low_rank))
        self.V = nn.Parameter(torch.empty(num_layers, num_experts, input_dim, low_rank))
        self.C = nn.Parameter(torch.empty(num_layers, num_experts, low_rank, low_rank))
        self.bias = nn.Parameter(torch.zeros(num_layers, input_dim))
        self.gates = nn.ModuleList(nn.Linear(input_dim, 1, bias=False) for _ in range(num_experts))
        for p in (self.U, self.V, self.C):
            nn.init.xavier_normal_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = x  # [B, D]
        for i in range(self.num_layers):
            gate = torch.cat([g(x) for g in self.gates], dim=1).softmax(dim=1)  # [B, E]
            v = torch.tanh(torch.einsum("bd,edr->ber", x, self.V[i]))  # [B, E, r]
            v = torch.tanh(torch.einsum("ber,ers->bes", v, self.C[i]))  # [B, E, r]
            uv = torch.einsum("bes,eds->bed", v, self.U[i]) + self.bias[i]  # [B, E, D]
            experts = x0.unsqueeze(1) * uv  # [B, E, D]
            x = (experts * gate.unsqueeze(-1)).sum(dim=1) + x
        return x
