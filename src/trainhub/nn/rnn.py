"""Recurrent layers over padded behaviour sequences (DIEN's interest extractor and evolver).

Both step through the sequence and leave the hidden state unchanged at padding positions, so
pre-padded and post-padded histories give the same final state.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskedGRU", "AUGRU"]


class MaskedGRU(nn.Module):
    """A GRU that skips padding: ``x [B, L, D], mask [B, L] -> (outputs [B, L, H], last [B, H])``.

    ``outputs`` holds the hidden state after each real item and zeros at padding positions;
    ``last`` is the state after the last real item (zeros for an empty history).
    """

    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.cell = nn.GRUCell(input_dim, hidden_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.new_zeros(x.shape[0], self.hidden_dim)
        keep = mask.unsqueeze(-1).to(x.dtype)  # [B, L, 1]
        outputs = []
        for t in range(x.shape[1]):
            h = keep[:, t] * self.cell(x[:, t], h) + (1 - keep[:, t]) * h
            outputs.append(h * keep[:, t])
        return torch.stack(outputs, dim=1), h


class AUGRU(nn.Module):
    """GRU with attentional update gate (DIEN): ``u'_t = a_t * u_t``.

    Items the attention finds irrelevant to the target (small ``a_t``) barely move the state.

    Args:
        input_dim: size of each input vector.
        hidden_dim: size of the hidden state.

    Shape:
        ``x [B, L, D], attention [B, L], mask [B, L] -> last hidden state [B, H]``.
    """

    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.input_proj = nn.Linear(input_dim, 3 * hidden_dim)  # reset, update, candidate
        self.hidden_proj = nn.Linear(hidden_dim, 3 * hidden_dim, bias=False)

    def forward(self, x: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden_dim)
        projected = self.input_proj(x)  # [B, L, 3H], all steps at once
        keep = mask.to(x.dtype)  # [B, L]
        for t in range(x.shape[1]):
            xr, xu, xc = projected[:, t].chunk(3, dim=-1)
            hr, hu, hc = self.hidden_proj(h).chunk(3, dim=-1)
            reset = torch.sigmoid(xr + hr)
            update = torch.sigmoid(xu + hu) * attention[:, t:t + 1]
            candidate = torch.tanh(xc + reset * hc)
            new_h = (1 - update) * h + update * candidate
            h = keep[:, t:t + 1] * new_h + (1 - keep[:, t:t + 1]) * h
        return h
