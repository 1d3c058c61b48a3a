"""Facebook's embedding-based retrieval DSSM (Huang et al., 2020): pair-wise two towers."""

from __future__ import annotations

import torch

from trainhub.features import SparseFeature
from trainhub.models import toy
from trainhub.models.matching.base import MatchModel, as_list, flat_dim, normalize, tower_mlp
from trainhub.models.registry import register_model
from trainhub.nn import EmbeddingCollection

__all__ = ["FaceBookDSSM"]


def _example():
    features = toy.sparse_features()
    user = [f for f in features if f.name in ("user_id", "city")]
    pos = [f for f in features if f.name in ("item_id", "cate_id")]
    neg = [SparseFeature("neg_item_id", toy.VOCAB["item_id"], toy.EMBED_DIM, shared_with="item_id"),
           SparseFeature("neg_cate_id", toy.VOCAB["cate_id"], toy.EMBED_DIM, shared_with="cate_id")]
    kwargs = dict(user_features=user, pos_item_features=pos, neg_item_features=neg,
                  user_params={"dims": [16, 8]}, item_params={"dims": [16, 8]}, temperature=0.1)
    return kwargs, toy.match_batch()


@register_model("matching", _example)
class FaceBookDSSM(MatchModel):
    """Two towers trained pair-wise: ``model(x)`` returns ``(pos_score [B], neg_score [B])``.

    Args:
        user_features: features of the user tower.
        pos_item_features: features of the positive item; they define the item tower input.
        neg_item_features: the negative item's features, in the same order and sizes as
            ``pos_item_features`` (usually ``shared_with`` them), fed through the same item tower.
        user_params / item_params: tower MLP kwargs (``dims`` required, same last width).
        temperature: cosine scores are divided by it.

    In ``"item"`` mode the positive item features give L2-normalised embeddings, the same
    vectors training scores (Torch-RecHub returned unnormalised ones).
    """

    def __init__(self, user_features, pos_item_features, neg_item_features, user_params, item_params,
                 temperature: float = 1.0):
        super().__init__(temperature)
        self.user_features = as_list(user_features)
        self.pos_item_features = as_list(pos_item_features)
        self.neg_item_features = as_list(neg_item_features)
        pos_dims = [f.embed_dim for f in self.pos_item_features]
        neg_dims = [f.embed_dim for f in self.neg_item_features]
        if pos_dims != neg_dims:
            raise ValueError(f"neg_item_features must mirror pos_item_features: dims {neg_dims} vs {pos_dims}")
        self.embedding = EmbeddingCollection(self.user_features + self.pos_item_features + self.neg_item_features)
        self.user_mlp = tower_mlp(flat_dim(self.user_features), user_params, "FaceBookDSSM user_params")
        self.item_mlp = tower_mlp(flat_dim(self.pos_item_features), item_params, "FaceBookDSSM item_params")
        if self.user_mlp.output_dim != self.item_mlp.output_dim:
            raise ValueError("FaceBookDSSM towers must end with one width")

    def user_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return normalize(self.user_mlp(self.embedding(x, self.user_features, squeeze_dim=True)))

    def _items(self, x: dict[str, torch.Tensor], features) -> torch.Tensor:
        return normalize(self.item_mlp(self.embedding(x, features, squeeze_dim=True)))

    def item_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._items(x, self.pos_item_features)

    def scores(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        user = self.user_tower(x)
        pos = (user * self._items(x, self.pos_item_features)).sum(-1) / self.temperature
        neg = (user * self._items(x, self.neg_item_features)).sum(-1) / self.temperature
        return pos, neg
