"""DIN (Zhou et al., 2018): the user's history is pooled with attention weights that depend on
the candidate item (target attention), then everything goes through an MLP."""

from __future__ import annotations

import torch
from torch import nn

from trainhub.models import toy
from trainhub.models.ranking._history import check_pairs, embed_sequence
from trainhub.models.registry import register_model
from trainhub.nn import MLP, EmbeddingCollection, TargetAttention


def _example():
    features = [f for f in toy.sparse_features() if f.name in ("user_id", "city")] + toy.dense_features()
    kwargs = dict(features=features, history_features=toy.history_features(pooling="concat"),
                  target_features=toy.target_features(), mlp_params={"dims": [16, 8], "dropout": 0.1},
                  attention_mlp_params={"dims": [8], "use_softmax": False})
    return kwargs, toy.batch()


@register_model("ranking", _example)
class DIN(nn.Module):
    """Deep Interest Network.

    Args:
        features: user-profile and context features (any kind), fed to the MLP as they are.
        history_features: behaviour sequences (``SequenceFeature``, padded with 0 or their
            ``padding_idx``), usually ``shared_with`` the matching target feature.
        target_features: the candidate item's features, one per history feature (same order,
            same ``embed_dim``).
        mlp_params: keyword arguments of :class:`trainhub.nn.MLP`; the activation defaults to
            ``"dice"`` (Torch-RecHub forbids overriding it; here ``"activation"`` may be given).
        attention_mlp_params: keyword arguments of :class:`trainhub.nn.TargetAttention`
            (``dims``, ``activation``, ``use_softmax``, ``dropout``).

    Padding positions get zero attention weight. Returns logits ``[B]``.
    """

    def __init__(self, features, history_features, target_features, mlp_params, attention_mlp_params):
        super().__init__()
        self.features = list(features)
        self.history_features = list(history_features)
        self.target_features = list(target_features)
        check_pairs(self.history_features, self.target_features, "history feature", "target feature")
        all_features = self.features + self.history_features + self.target_features
        self.all_dims = sum(f.embed_dim for f in all_features)
        self.embedding = EmbeddingCollection(all_features)
        self.attention_layers = nn.ModuleList(
            TargetAttention(f.embed_dim, **(attention_mlp_params or {})) for f in self.history_features)
        self.mlp = MLP(self.all_dims, **{"activation": "dice", **mlp_params})

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        pooled = []
        for attention, hist, target in zip(self.attention_layers, self.history_features, self.target_features):
            history, mask = embed_sequence(self.embedding, hist, x)  # [B, L, D], [B, L]
            pooled.append(attention(history, self.embedding.embed_one(target, x), mask))  # [B, D]
        targets = self.embedding(x, self.target_features, squeeze_dim=True)  # [B, sum D]
        parts = pooled + [targets]
        if self.features:
            parts.append(self.embedding(x, self.features, squeeze_dim=True))
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)
