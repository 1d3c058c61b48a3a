"""BST (Chen et al., 2019): a Transformer encoder over the behaviour sequence with the target
item appended; the target position's output joins the other features in an MLP."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.models import toy
from trainhub.models.ranking._history import embed_sequence
from trainhub.models.registry import register_model
from trainhub.nn import MLP, EmbeddingCollection


def _example():
    features = [f for f in toy.sparse_features() if f.name in ("user_id", "city")] + toy.dense_features()
    kwargs = dict(features=features, history_features=toy.history_features(pooling="concat"),
                  target_features=toy.target_features(), mlp_params={"dims": [16, 8], "dropout": 0.1},
                  nhead=2, dropout=0.1, num_layers=1, max_seq_len=toy.SEQ_LEN + 1)
    return kwargs, toy.batch()


@register_model("ranking", _example)
class BST(nn.Module):
    """Behavior Sequence Transformer.

    At each step the history features are concatenated into one item vector; the target
    features (concatenated the same way) form the last position. A learned absolute position
    embedding is added, padding positions are masked out of the attention, and the output at
    the target position is the user's interest.

    Args:
        features: user-profile and context features (any kind), fed to the MLP.
        history_features: behaviour sequences (``SequenceFeature``), padded with 0 or their
            ``padding_idx``; a step is padding when every history feature is padding there.
        target_features: the candidate item's features; their ``embed_dim`` must sum to the
            history features' sum (``item_dim``).
        mlp_params: keyword arguments of :class:`trainhub.nn.MLP`.
        nhead: attention heads (must divide ``item_dim``).
        dropout: dropout inside the Transformer.
        num_layers: Transformer encoder layers.
        max_seq_len: longest history + 1 (the target) the position table holds.

    The feed-forward width of each encoder layer is ``4 * item_dim``. Returns logits ``[B]``.
    """

    def __init__(self, features, history_features, target_features, mlp_params, nhead=8, dropout=0.2, num_layers=1,
                 max_seq_len=51):
        super().__init__()
        self.features = list(features)
        self.history_features = list(history_features)
        self.target_features = list(target_features)
        self.max_seq_len = max_seq_len
        self.item_dim = sum(f.embed_dim for f in self.history_features)
        target_dim = sum(f.embed_dim for f in self.target_features)
        if self.item_dim != target_dim:
            raise ValueError(f"the history features' embed_dims sum to {self.item_dim} but the target features' "
                             f"to {target_dim}; they must match")
        if self.item_dim % nhead != 0:
            raise ValueError(f"item_dim ({self.item_dim}) must be divisible by nhead ({nhead})")
        self.all_dims = sum(f.embed_dim for f in self.features + self.target_features) + self.item_dim
        self.embedding = EmbeddingCollection(self.features + self.history_features + self.target_features)
        self.pos_embedding = nn.Embedding(max_seq_len, self.item_dim)
        layer = nn.TransformerEncoderLayer(self.item_dim, nhead, dim_feedforward=4 * self.item_dim, dropout=dropout,
                                           activation=nn.LeakyReLU(), batch_first=True)
        self.transformer_layers = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
        self.mlp = MLP(self.all_dims, **mlp_params)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        steps, masks = zip(*(embed_sequence(self.embedding, f, x) for f in self.history_features))
        history = torch.cat(steps, dim=-1)  # [B, L, item_dim]
        real = torch.stack(masks, dim=0).any(dim=0)  # [B, L]
        target = self.embedding(x, self.target_features, squeeze_dim=True)  # [B, item_dim]
        seq = torch.cat([history, target.unsqueeze(1)], dim=1)  # [B, L+1, item_dim]
        if seq.shape[1] > self.max_seq_len:
            raise ValueError(f"history length {seq.shape[1] - 1} + 1 target exceeds max_seq_len={self.max_seq_len}")
        seq = seq + self.pos_embedding(torch.arange(seq.shape[1], device=seq.device))
        padding = torch.cat([~real, real.new_zeros(real.shape[0], 1)], dim=1)  # the target is never padding
        interest = self.transformer_layers(seq, src_key_padding_mask=padding)[:, -1]  # [B, item_dim]
        parts = [interest, target]
        if self.features:
            parts.append(self.embedding(x, self.features, squeeze_dim=True))
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)
