"""Multi-layer perceptron and activation lookup."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from trainhub.nn.fused_table import is_tracing

__all__ = ["MLP", "activation_layer", "Dice", "Dropout", "linear_of_parts", "stacked_mlps"]


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

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """``x [B, input_dim]``, or a list of ``[B, d_i]`` pieces that are its columns in order
        (:meth:`EmbeddingCollection.flat_parts`): the first layer then reads the pieces where
        they are, with no concatenated copy and no input gradient for a piece that needs none.
        Hooks on this module receive the list as given; with hooks on it, on ``self.mlp`` or on
        the first layer, the pieces are concatenated first."""
        if isinstance(x, (list, tuple)):
            layers = list(self.mlp)
            if not layers or type(layers[0]) is not nn.Linear or _global_hooks() or any(
                    _has_hooks(m, recurse=False) for m in (self, self.mlp, layers[0])):
                return self.mlp(torch.cat(list(x), dim=1) if len(x) > 1 else x[0])
            h = linear_of_parts(layers[0], x)
            for layer in layers[1:]:
                h = layer(h)
            return h
        return self.mlp(x)


class _LinearOfParts(torch.autograd.Function):
    """``linear(torch.cat(parts, dim=1), weight, bias)`` as one product per piece. The backward
    pass is made of differentiable operations on the inputs, so second derivatives and
    ``torch.func`` transforms see the same function as the concatenated form."""

    generate_vmap_rule = True

    @staticmethod
    def forward(weight, bias, *parts):
        start, out = 0, None
        for p in parts:
            w_t = weight[:, start:start + p.shape[1]].t()
            if out is None:
                out = torch.addmm(bias, p, w_t) if bias is not None else torch.mm(p, w_t)
            else:
                out = out.addmm_(p, w_t)
            start += p.shape[1]
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):
        weight, _, *parts = inputs
        ctx.save_for_backward(weight, *parts)

    @staticmethod
    def backward(ctx, grad):
        weight, *parts = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grads, start = [], 0
        for i, p in enumerate(parts):
            grads.append(grad.mm(weight[:, start:start + p.shape[1]]) if needs[2 + i] else None)
            start += p.shape[1]
        grad_weight = torch.cat([grad.t().mm(p) for p in parts], dim=1) if needs[0] else None
        grad_bias = grad.sum(0) if needs[1] else None
        return grad_weight, grad_bias, *grads


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def linear_of_parts(linear: nn.Linear, parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """``linear(torch.cat(parts, dim=1))`` for 2-D ``parts``, without the concatenated copy.

    Each piece is multiplied by its block of columns of the weight, and the backward pass computes
    input gradients only for the pieces that need one (a model's dense values need none, and the
    product for the whole width would be wasted on them; an odd width such as ``26 * 16 + 13`` also
    takes a slower matrix-product kernel than the embeddings' ``26 * 16``). The result equals the
    concatenated form up to float rounding (float32 and float64 weights; half-precision weights,
    which would round after each piece, take the concatenated form, as do hooks, autocast, tracing
    and compiling).
    """
    parts = list(parts)
    if len(parts) == 1:
        return linear(parts[0])
    weight, bias = linear.weight, linear.bias
    if (type(linear) is not nn.Linear or _global_hooks() or _has_hooks(linear)
            or weight.dtype not in (torch.float32, torch.float64)
            or _autocast_on(weight.device.type) or is_tracing()
            or any(p.dim() != 2 or p.dtype != weight.dtype or p.shape[0] != parts[0].shape[0] for p in parts)
            or sum(p.shape[1] for p in parts) != weight.shape[1]):
        return linear(torch.cat(parts, dim=1))
    return _LinearOfParts.apply(weight, bias, *parts)


# Layers stacked_mlps runs over every MLP's channels at once, by exact type (a subclass may hold
# its own parameters or behave otherwise).
_ELEMENTWISE = {nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.LeakyReLU, nn.Identity}
_STACKABLE = _ELEMENTWISE | {nn.Linear, nn.BatchNorm1d, nn.PReLU, nn.Dropout, Dropout}


def _has_hooks(module: nn.Module, recurse: bool = True) -> bool:
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    modules = module.modules() if recurse else (module,)
    return any(getattr(m, h, None) for m in modules for h in hooks)


def _global_hooks() -> bool:
    from torch.nn.modules import module as torch_module

    names = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
             "_global_backward_pre_hooks")
    return any(getattr(torch_module, n, None) for n in names)


def _same_structure(mlps: Sequence[nn.Module]) -> bool:
    """Whether ``mlps`` are :class:`MLP` s of one layout made only of layers :func:`stacked_mlps`
    can run side by side (Linear, BatchNorm1d, element-wise activations, PReLU, Dropout), with no
    hooks (pruning, weight norm, user hooks act per module and would be skipped)."""
    if len(mlps) < 2 or not all(type(m) is MLP for m in mlps):
        return False
    first = list(mlps[0].mlp)
    if not first or type(first[0]) is not nn.Linear or _global_hooks() or any(_has_hooks(m) for m in mlps):
        return False
    for m in mlps[1:]:
        layers = list(m.mlp)
        if len(layers) != len(first):
            return False
        for a, b in zip(first, layers):
            if type(a) is not type(b) or type(a) not in _STACKABLE:
                return False
            if isinstance(a, nn.Linear) and (a.weight.shape != b.weight.shape or (a.bias is None) != (b.bias is None)):
                return False
            if isinstance(a, nn.BatchNorm1d) and (
                    (a.num_features, a.eps, a.momentum, a.affine, a.track_running_stats, a.training)
                    != (b.num_features, b.eps, b.momentum, b.affine, b.track_running_stats, b.training)
                    or (a.momentum is None and a.track_running_stats
                        and int(a.num_batches_tracked) != int(b.num_batches_tracked))):
                return False  # a cumulative average weighs each norm by its own batch count
            if isinstance(a, nn.Dropout) and (a.p, a.training) != (b.p, b.training):
                return False
            if isinstance(a, nn.LeakyReLU) and a.negative_slope != b.negative_slope:
                return False
            if isinstance(a, nn.GELU) and a.approximate != b.approximate:
                return False
            if isinstance(a, nn.PReLU) and a.weight.shape != b.weight.shape:
                return False
    return True


def _batch_norm(norms: Sequence[nn.BatchNorm1d], x: torch.Tensor) -> torch.Tensor:
    """Each norm on its own block of channels of ``x [B, E * C]``, as one ``batch_norm`` call; the
    norms' running statistics are updated as their own forward passes would update them."""
    first = norms[0]
    update = first.training and first.track_running_stats
    factor = 0.0 if first.momentum is None else first.momentum
    if update:
        for n in norms:
            n.num_batches_tracked.add_(1)
        if first.momentum is None:  # cumulative average
            factor = 1.0 / float(first.num_batches_tracked)
    stats = first.track_running_stats
    mean = torch.cat([n.running_mean for n in norms]) if stats else None
    var = torch.cat([n.running_var for n in norms]) if stats else None
    weight = torch.cat([n.weight for n in norms]) if first.affine else None
    bias = torch.cat([n.bias for n in norms]) if first.affine else None
    out = torch.nn.functional.batch_norm(x, mean, var, weight, bias, first.training or not stats, factor, first.eps)
    if update:
        with torch.no_grad():
            for n, m, v in zip(norms, mean.chunk(len(norms)), var.chunk(len(norms))):
                n.running_mean.copy_(m)
                n.running_var.copy_(v)
    return out


def stacked_mlps(mlps: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """``torch.stack([m(x) for m in mlps], dim=1)`` (``[B, E, H]``) for MLPs of one layout, run
    side by side: the first layer of all of them is one matrix product over the shared input, the
    later ones one batched product, and each norm, activation and dropout is one call over every
    MLP's channels. The parameters stay each MLP's own (the state dict does not change); the
    result equals the loop up to float rounding, and dropout draws its masks in another order.
    Anything else (one MLP, other layers, unequal layouts) runs the loop.
    """
    if x.dim() != 2 or not _same_structure(mlps):
        return torch.stack([m(x) for m in mlps], dim=1)
    count, batch = len(mlps), x.shape[0]
    layers = list(zip(*(list(m.mlp) for m in mlps)))
    h = None  # [B, E * C]
    width = x.shape[1]
    for group in layers:
        first = group[0]
        if isinstance(first, nn.Linear):
            bias = torch.cat([g.bias for g in group]) if first.bias is not None else None
            if h is None:  # the shared input: one product for every MLP's first layer
                h = torch.nn.functional.linear(x, torch.cat([g.weight for g in group]), bias)
            else:
                weight = torch.stack([g.weight for g in group]).transpose(1, 2)  # [E, C_in, C_out]
                blocks = h.view(batch, count, width).transpose(0, 1)  # [E, B, C_in]
                out = (torch.baddbmm(bias.view(count, 1, -1), blocks, weight) if bias is not None
                       else torch.bmm(blocks, weight))  # [E, B, C_out]
                h = out.transpose(0, 1).reshape(batch, count * first.out_features)
            width = first.out_features
        elif isinstance(first, nn.BatchNorm1d):
            h = _batch_norm(group, h)
        elif isinstance(first, nn.PReLU):
            h = torch.nn.functional.prelu(h, torch.cat([g.weight.expand(width) for g in group]))
        else:  # element-wise, or dropout with one rate: the same law for every channel
            h = first(h)
    return h.view(batch, count, width)
