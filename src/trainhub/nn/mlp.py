"""Multi-layer perceptron and activation lookup."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["MLP", "activation_layer", "Dice", "Dropout"]


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper keep-mask: four mask elements per 64 random bits.

    Each element keeps its value when 15 random bits are at least ``round(p * 2^15)``, so the mask
    is Bernoulli(1 - p') per element with ``p'`` within ``2^-16`` of ``p``; kept values are scaled
    by ``1 / (1 - p')``, which keeps the layer unbiased. On the CPU, torch's ``bernoulli_`` costs
    about five times this and a uniform draw per element about 2.4 times; the mask was a tenth of a
    CTR model's training step.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        threshold = min(round(self.p * 32768), 32767)
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()
        bits = bits.view(torch.int16)[:n].view(x.shape)
        keep = bits.bitwise_and_(0x7FFF) >= threshold
        return x * keep.to(x.dtype).mul_(32768 / (32768 - threshold))


class Dice(nn.Module):
    """Data-adaptive activation from DIN: a PReLU whose gate follows the batch statistics."""

    def __init__(self, dim: int, eps: float = 1e-9):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, eps=eps, affine=False)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            normed = self.bn(x)
        else:
            # [B, ..., C] -> [B, C, N]: BatchNorm1d then takes per-channel statistics over the
            # batch and every position. (Flattening to [B * N, C] computes the same, but a
            # reshape to -1 leaves an exported BatchNorm with an unknown channel count.)
            seq = x if x.dim() == 3 else x.flatten(1, -2)  # [B, N, C]
            normed = self.bn(seq.transpose(1, 2)).transpose(1, 2).reshape_as(x)
        p = torch.sigmoid(normed)
        return p * x + (1 - p) * self.alpha * x


_ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "prelu": nn.PReLU,
    "gelu": nn.GELU,
    "leakyrelu": nn.LeakyReLU,
    "linear": nn.Identity,
    "identity": nn.Identity,
}


def activation_layer(activation: str | type | nn.Module, dim: int | None = None) -> nn.Module:
    """Build an activation from a name (``relu``, ``prelu``, ``dice``, ``softmax``, ...) or a class."""
    if isinstance(activation, nn.Module):
        return activation
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation()
    name = str(activation).lower()
    if name == "dice":
        if dim is None:
            raise ValueError("activation 'dice' needs the layer width")
        return Dice(dim)
    if name == "softmax":
        return nn.Softmax(dim=-1)
    if name not in _ACTIVATIONS:
        choices = sorted(_ACTIVATIONS) + ["dice", "softmax"]
        raise ValueError(f"unknown activation {activation!r}; choose one of {choices}")
    return _ACTIVATIONS[name]()


class MLP(nn.Module):
    """Stack of ``Linear -> BatchNorm1d -> activation -> Dropout`` blocks, optionally ending in ``Linear(., 1)``.

    Args:
        input_dim: width of the input.
        output_layer: append a final ``Linear(dims[-1], 1)`` and return ``[B, 1]``.
        dims: hidden widths, e.g. ``[256, 128]``.
        dropout: dropout after each hidden block.
        activation: activation name or module class.
        batch_norm: put a BatchNorm1d in each hidden block (Torch-RecHub's layout).
    """

    def __init__(
        self,
        input_dim: int,
        output_layer: bool = True,
        dims: Sequence[int] | None = None,
        dropout: float = 0.0,
        activation: str | type = "relu",
        batch_norm: bool = True,
    ):
        super().__init__()
        dims = list(dims or [])
        layers: list[nn.Module] = []
        width = input_dim
        for out in dims:
            layers.append(nn.Linear(width, out))
            if batch_norm:
                layers.append(nn.BatchNorm1d(out))
            layers.append(activation_layer(activation, out))
            layers.append(Dropout(dropout))
            width = out
        if output_layer:
            layers.append(nn.Linear(width, 1))
            width = 1
        self.output_dim = width
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)
