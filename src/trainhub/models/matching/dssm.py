"""DSSM two-tower model (Huang et al., 2013): cosine of two MLP towers, divided by a temperature."""

from __future__ import annotations

import torch

from trainhub.models import toy
from trainhub.models.matching.base import MatchModel, as_list, flat_dim, normalize, tower_mlp
from trainhub.models.registry import register_model
from trainhub.nn import EmbeddingCollection

__all__ = ["DSSM"]


def _example():
    features = toy.sparse_features()
    user = [f for f in features if f.name in ("user_id", "city")] + toy.dense_features()[:1]
    item = [f for f in features if f.name in ("item_id", "cate_id")]
    kwargs = dict(user_features=user, item_features=item, user_params={"dims": [16, 8], "activation": "prelu"},
                  item_params={"dims": [16, 8], "activation": "prelu"}, temperature=0.1)
    return kwargs, toy.match_batch()


@register_model("matching", _example)
class DSSM(MatchModel):
    """DSSM.

    Args:
        user_features: features of the user tower (any kind; sequences pooled).
        item_features: features of the item tower.
        user_params: :class:`trainhub.nn.MLP` kwargs of the user tower (``dims`` required).
        item_params: same for the item tower; both towers must end with the same width.
        temperature: cosine scores are divided by it (Torch-RecHub ignored it).

    ``model(x)`` returns point-wise logits ``[B]`` = ``cos(u, i) / temperature``.

    Example:
        >>> model = DSSM(user_feats, item_feats, {"dims": [64, 32]}, {"dims": [64, 32]}, temperature=0.05)
        >>> MatchTrainer(model, mode=0).fit(train_dl)
    """

    def __init__(self, user_features, item_features, user_params, item_params, temperature: float = 1.0):
        super().__init__(temperature)
        self.user_features = as_list(user_features)
        self.item_features = as_list(item_features)
        self.embedding = EmbeddingCollection(self.user_features + self.item_features)
        self.user_mlp = tower_mlp(flat_dim(self.user_features), user_params, "DSSM user_params")
        self.item_mlp = tower_mlp(flat_dim(self.item_features), item_params, "DSSM item_params")
        if self.user_mlp.output_dim != self.item_mlp.output_dim:
            raise ValueError(f"DSSM towers must end with one width: user {self.user_mlp.output_dim}, "
                             f"item {self.item_mlp.output_dim}")

    def user_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return normalize(self.user_mlp(self.embedding(x, self.user_features, squeeze_dim=True)))  # [B, D]

    def item_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return normalize(self.item_mlp(self.embedding(x, self.item_features, squeeze_dim=True)))  # [B, D]

    def scores(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return (self.user_tower(x) * self.item_tower(x)).sum(dim=-1) / self.temperature  # [B]
