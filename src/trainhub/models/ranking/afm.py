"""AFM (Xiao et al., 2017): a factorization machine whose pairwise interactions are weighted by
an attention network."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.models import toy
from trainhub.models.registry import register_model
from trainhub.nn import LR, EmbeddingCollection


def _example():
    fm_features = toy.sparse_features() + toy.history_features()
    return dict(fm_features=fm_features, embed_dim=toy.EMBED_DIM, t=16), toy.batch()


@register_model("ranking", _example)
class AFM(nn.Module):
    """Attentional factorization machine.

    ``logit = linear(e) + p^T sum_{i<j} a_ij (v_i * v_j)`` with
    ``a = softmax_{pairs}(h^T relu(W (v_i * v_j) + b))``. (Torch-RecHub takes the softmax over a
    size-1 axis, so its weights are all 1 and its AFM is a plain weighted FM; here the softmax
    runs over the pairs, as in the paper.)

    Args:
        fm_features: sparse/sequence features, all with ``embed_dim`` (at least two).
        embed_dim: their embedding size.
        t: hidden size of the attention network.

    Returns logits ``[B]``.
    """

    def __init__(self, fm_features, embed_dim, t=64):
        super().__init__()
        self.fm_features = list(fm_features)
        if len(self.fm_features) < 2:
            raise ValueError("AFM needs at least two fm_features to form an interaction")
        for f in self.fm_features:
            if f.embed_dim != embed_dim:
                raise ValueError(
                    f"fm feature {f.name!r} has embed_dim={f.embed_dim}, AFM was given embed_dim={embed_dim}")
        self.embed_dim = embed_dim
        self.embedding = EmbeddingCollection(self.fm_features)
        self.linear = LR(len(self.fm_features) * embed_dim)
        rows, cols = torch.triu_indices(len(self.fm_features), len(self.fm_features), offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.attention = nn.Sequential(nn.Linear(embed_dim, t), nn.ReLU(), nn.Linear(t, 1, bias=False))
        self.p = nn.Linear(embed_dim, 1, bias=False)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        fields = self.embedding(x, self.fm_features)  # [B, F, D]
        pairs = fields[:, self.rows] * fields[:, self.cols]  # [B, P, D]
        weights = torch.softmax(self.attention(pairs), dim=1)  # [B, P, 1]
        interaction = self.p((weights * pairs).sum(dim=1))  # [B, 1]
        return (self.linear(fields.flatten(1)) + interaction).squeeze(1)
