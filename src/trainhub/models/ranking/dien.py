"""DIEN (Zhou et al., 2019): a GRU extracts interests from the behaviour sequence (trained with
an auxiliary next-click loss), an attention-gated GRU (AUGRU) evolves them toward the target."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainhub.models import toy
from trainhub.models.ranking._history import check_pairs, embed_sequence
from trainhub.models.registry import register_model
from trainhub.nn import AUGRU, MLP, EmbeddingCollection, MaskedGRU, masked_softmax
from trainhub.nn.fused_table import is_tracing


def _example():
    features = [f for f in toy.sparse_features() if f.name in ("user_id", "city")] + toy.dense_features()
    kwargs = dict(features=features, history_features=toy.history_features(pooling="concat"),
                  neg_history_features=toy.neg_history_features(), target_features=toy.target_features(),
                  mlp_params={"dims": [16, 8]}, alpha=0.5)
    return kwargs, toy.batch()


def auxiliary_loss(states: torch.Tensor, next_pos: torch.Tensor, next_neg: torch.Tensor,
                   valid: torch.Tensor) -> torch.Tensor:
    """DIEN's auxiliary loss: state ``h_t`` should score the next clicked item above a sampled one.

    ``logit = <h_t, e_{t+1}>``; binary cross-entropy with label 1 for the clicked and 0 for the
    sampled item, averaged over the valid steps (both positions real). Zero when none is valid.

    Args:
        states: ``[B, L-1, D]`` interest states ``h_0 .. h_{L-2}``.
        next_pos: ``[B, L-1, D]`` clicked items ``e_1 .. e_{L-1}``.
        next_neg: ``[B, L-1, D]`` sampled items at the same positions.
        valid: ``[B, L-1]`` bool.
    """
    if not bool(valid.any()):
        return states.sum() * 0.0  # keeps the graph (and the device) without contributing
    pos_logit = (states * next_pos).sum(-1)[valid]
    neg_logit = (states * next_neg).sum(-1)[valid]
    # BCE(label 1) = softplus(-logit), BCE(label 0) = softplus(logit): the stable forms.
    return 0.5 * (F.softplus(-pos_logit).mean() + F.softplus(neg_logit).mean())


@register_model("ranking", _example)
class DIEN(nn.Module):
    """Deep Interest Evolution Network. ``forward`` returns ``(logits [B], alpha * aux_loss)``;
    train it with ``CTRTrainer(model, loss_mode=False)``.

    Args:
        features: user-profile and context features (any kind), fed to the MLP.
        history_features: clicked-item sequences (``SequenceFeature``, padded with 0 or their
            ``padding_idx``; pre- or post-padding both work).
        neg_history_features: one sampled non-clicked item per history position, one sequence
            per history feature (same order and ``embed_dim``; usually ``shared_with`` the target).
        target_features: the candidate item's features, one per history feature.
        mlp_params: keyword arguments of :class:`trainhub.nn.MLP`; activation defaults to ``"dice"``.
        alpha: weight of the auxiliary loss.

    Padding is ignored everywhere: the GRUs keep their state over padding, the AUGRU's attention
    gives it weight 0, and the auxiliary loss only uses steps where both items are real.
    """

    def __init__(self, features, history_features, neg_history_features, target_features, mlp_params, alpha=0.2):
        super().__init__()
        self.alpha = alpha
        self.features = list(features)
        self.history_features = list(history_features)
        self.neg_history_features = list(neg_history_features)
        self.target_features = list(target_features)
        check_pairs(self.history_features, self.target_features, "history feature", "target feature")
        check_pairs(self.history_features, self.neg_history_features, "history feature", "negative history feature")
        self.all_dims = sum(f.embed_dim for f in self.features + self.history_features + self.target_features)
        self.embedding = EmbeddingCollection(
            self.features + self.history_features + self.neg_history_features + self.target_features)
        dims = [f.embed_dim for f in self.history_features]
        self.interest_extractor_layers = nn.ModuleList(MaskedGRU(d, d) for d in dims)
        self.attention_weights = nn.ModuleList(nn.Linear(d, d, bias=False) for d in dims)
        self.interest_evolving_layers = nn.ModuleList(AUGRU(d, d) for d in dims)
        self.mlp = MLP(self.all_dims, **{"activation": "dice", **mlp_params})

    def forward(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        evolved, aux = [], []
        for i, (hist, neg, target) in enumerate(zip(self.history_features, self.neg_history_features,
                                                     self.target_features)):
            history, mask = embed_sequence(self.embedding, hist, x)  # [B, L, D], [B, L]
            states, _ = self.interest_extractor_layers[i](history, mask)  # [B, L, D]
            # An exported graph serves logits only: the auxiliary loss needs sampled negatives,
            # which serving does not have (and its "any step valid?" test cannot be traced).
            if not is_tracing():
                negatives, neg_mask = embed_sequence(self.embedding, neg, x)
                if negatives.shape != history.shape:
                    raise ValueError(f"{neg.name!r} {tuple(negatives.shape[:2])} must have the shape of "
                                     f"{hist.name!r} {tuple(history.shape[:2])}")
                valid = mask[:, :-1] & mask[:, 1:] & neg_mask[:, 1:]
                aux.append(auxiliary_loss(states[:, :-1], history[:, 1:], negatives[:, 1:], valid))
            target_emb = self.embedding.embed_one(target, x)  # [B, D]
            scores = (self.attention_weights[i](states) * target_emb.unsqueeze(1)).sum(-1)  # [B, L]
            attention = masked_softmax(scores, mask)
            evolved.append(self.interest_evolving_layers[i](states, attention, mask))  # [B, D]
        parts = evolved + [self.embedding(x, self.target_features, squeeze_dim=True)]
        if self.features:
            parts.append(self.embedding(x, self.features, squeeze_dim=True))
        logits = self.mlp(torch.cat(parts, dim=1)).squeeze(1)
        if not aux:
            return logits, logits.new_zeros(())
        return logits, self.alpha * torch.stack(aux).sum()
