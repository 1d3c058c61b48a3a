"""YouTube sampling-bias-corrected two towers (Yi et al., 2019): in-batch softmax with logQ correction."""

from __future__ import annotations

import torch

from trainhub.models import toy
from trainhub.models.matching.base import MatchModel, as_list, flat_dim, normalize, tower_mlp
from trainhub.models.registry import register_model
from trainhub.nn import EmbeddingCollection, require

__all__ = ["YoutubeSBC"]


def _example():
    from trainhub.features import DenseFeature

    features = {f.name: f for f in toy.sparse_features()}
    kwargs = dict(user_features=[features["user_id"], features["city"]],
                  item_features=[features["item_id"], features["cate_id"]],
                  sample_weight_feature=[DenseFeature("item_prob")], user_params={"dims": [16, 8]},
                  item_params={"dims": [16, 8]}, batch_size=toy.BATCH_SIZE, n_neg=3, temperature=0.1)
    return kwargs, toy.match_batch()


@register_model("matching", _example)
class YoutubeSBC(MatchModel):
    """YoutubeSBC.

    Args:
        user_features / item_features: tower inputs.
        sample_weight_feature: a ``DenseFeature`` holding each row's item sampling probability
            ``p`` (e.g. its frequency); logits of in-batch candidates are corrected by ``- log p``.
        user_params / item_params: tower MLP kwargs (``dims`` required, same last width).
        batch_size: kept for Torch-RecHub compatibility; any batch size works (the last, smaller
            batch included).
        n_neg: in-batch negatives per row (at most ``B - 1``).
        temperature: cosine scores are divided by it.

    ``model(x)`` returns list-wise logits ``[B, 1 + n_neg]``: the row's own item first, then the
    items of the next ``n_neg`` rows of the batch. Candidates equal to the row's own item (same
    id of the first item feature) are pushed out of the softmax.
    """

    def __init__(self, user_features, item_features, sample_weight_feature, user_params, item_params, batch_size,
                 n_neg: int = 3, temperature: float = 1.0):
        super().__init__(temperature)
        self.user_features = as_list(user_features)
        self.item_features = as_list(item_features)
        weight = as_list(sample_weight_feature)
        if len(weight) != 1:
            raise ValueError("YoutubeSBC takes one sample_weight_feature")
        self.sample_weight_feature = weight[0]
        if n_neg < 1:
            raise ValueError(f"n_neg must be >= 1, got {n_neg}")
        self.batch_size, self.n_neg = batch_size, n_neg
        self.embedding = EmbeddingCollection(self.user_features + self.item_features)
        self.user_mlp = tower_mlp(flat_dim(self.user_features), user_params, "YoutubeSBC user_params")
        self.item_mlp = tower_mlp(flat_dim(self.item_features), item_params, "YoutubeSBC item_params")
        if self.user_mlp.output_dim != self.item_mlp.output_dim:
            raise ValueError("YoutubeSBC towers must end with one width")

    def user_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return normalize(self.user_mlp(self.embedding(x, self.user_features, squeeze_dim=True)))

    def item_tower(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return normalize(self.item_mlp(self.embedding(x, self.item_features, squeeze_dim=True)))

    def scores(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        user, item = self.user_tower(x), self.item_tower(x)
        batch = user.shape[0]
        prob = require(x, self.sample_weight_feature.name).float().reshape(-1).clamp_min(1e-12)
        logits = user @ item.T / self.temperature - prob.log().unsqueeze(0)  # [B, B], logQ-corrected
        n_neg = min(self.n_neg, batch - 1)
        rows = torch.arange(batch, device=user.device)
        cols = (rows.unsqueeze(1) + torch.arange(n_neg + 1, device=user.device)) % batch  # [B, 1+n], own item first
        out = logits.gather(1, cols)
        ids = require(x, self.item_features[0].name).reshape(-1)
        clash = ids[cols[:, 1:]] == ids.unsqueeze(1)  # a "negative" that is the row's own item
        neg = out[:, 1:].masked_fill(clash, float("-inf"))  # drops out of the softmax and of AUC
        return torch.cat([out[:, :1], neg], dim=1)
