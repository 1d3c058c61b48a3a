"""A pre-norm causal softmax transformer block (SASRec's and HLLM's user encoder).

Attention runs through ``F.scaled_dot_product_attention`` (fused kernels where the device has
them) with one mask built per forward and shared by every block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CausalTransformerBlock", "causal_attention_mask"]


def causal_attention_mask(real: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Attention mask for left-padded rows ``real [B, L]`` (True = item), with an optional additive
    ``bias [1 or B, H, L, L]``.

    A query reads itself and the earlier real items. A PAD query reads only itself, so no row is
    empty (an all-masked softmax row is NaN) and PAD keys never reach a real query: real positions
    do not depend on the padding. Returns a bool mask ``[B, 1, L, L]`` (True = attend) without
    ``bias``, else a float mask ``[B, H, L, L]`` (bias, ``-inf`` where masked).
    """
    positions = torch.arange(real.shape[1], device=real.device)
    query, key = positions.unsqueeze(1), positions.unsqueeze(0)
    # Comparisons rather than torch.eye: a boolean EyeLike has no onnxruntime kernel.
    allowed = (key <= query) & (real[:, None, None, :] | (key == query))  # [B, 1, L, L]
    if bias is None:
        return allowed
    return bias.masked_fill(~allowed, float("-inf"))


class CausalTransformerBlock(nn.Module):
    """``x + Dropout(Attn(LN(x)))`` then ``x + FFN(LN(x))``; FFN = Linear-ReLU-Dropout-Linear-Dropout.

    Args:
        d_model: width (divisible by ``n_heads``).
        n_heads: attention heads.
        dropout: on attention weights, the attention output and inside the FFN.
        ffn_dim: hidden width of the FFN (default ``4 * d_model``).

    Shape:
        ``x [B, L, D]``, ``attn_mask`` from :func:`causal_attention_mask` -> ``[B, L, D]``.

    Checkpoints with separate ``W_Q`` / ``W_K`` / ``W_V`` / ``W_O`` projections (Torch-RecHub's
    ``HLLMTransformerBlock``) load into the fused ``qkv`` / ``out`` ones.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.1, ffn_dim: int | None = None):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}).")
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.attn_dropout = dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)  # one matmul for queries, keys and values
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        hidden = ffn_dim or 4 * d_model
        self.ffn = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, d_model),
                                 nn.Dropout(dropout))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(self.norm1(x)).unflatten(-1, (3, self.n_heads, self.head_dim))  # [B, L, 3, H, Dh]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B, H, L, Dh]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                                  dropout_p=self.attn_dropout if self.training else 0.0)
        x = x + self.dropout(self.out(attended.transpose(1, 2).flatten(2)))  # [B, L, D]
        return x + self.ffn(self.norm2(x))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Torch-RecHub's HLLM block keeps four projections; fuse them on the way in.
        if prefix + "W_Q.weight" in state_dict:
            for kind in ("weight", "bias"):
                parts = [state_dict.pop(f"{prefix}W_{name}.{kind}") for name in "QKV"]
                state_dict[f"{prefix}qkv.{kind}"] = torch.cat(parts, dim=0)
                state_dict[f"{prefix}out.{kind}"] = state_dict.pop(f"{prefix}W_O.{kind}")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
