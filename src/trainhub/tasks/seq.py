"""Next-item prediction: full and sampled softmax objectives, exact full-ranking metrics.

Batches are Torch-RecHub's ``(seq_tokens, seq_positions, seq_time_diffs, targets)`` (positions are
unused, as upstream): ``seq_tokens [B, L]`` left-padded with PAD = 0, ``targets [B]`` (or ``[B, 1]``)
the item after the last position. As in upstream's ``SeqTrainer``, position ``i`` learns to predict
``seq_tokens[:, i + 1]`` and the last position ``targets``; a position whose *current* token is PAD
takes no loss (so the last padding slot never learns PAD -> first item), PAD is never a target and
never a candidate. ``targets`` may also be per-position ``[B, L]`` (the next item of every position).

Models: ``model(seq_tokens, time_diffs) -> logits [B, L, V]`` always works (full softmax). A model
with ``encode(seq_tokens, time_diffs) -> hidden [B, L, D]`` and ``score(hidden [..., D], item_ids)``
(``item_ids [N]`` shared by every row -> ``[..., N]``; ``None`` = every item) is scored only where
needed: training rows with a target, the last position in validation (in chunks of users, so memory
stays bounded for large vocabularies), and only the sampled candidates under sampled softmax.

Objectives (Torch-RecHub's ``loss_type`` plus one):

* ``"cross_entropy"``: softmax over every item (PAD excluded), mean over positions with a target;
* ``"nce"``: upstream's ``NCELoss``, which is the same softmax cross-entropy on ``logits / temperature``
  (default temperature 0.1);
* ``"sampled_softmax"``: softmax over the positive and shared negatives, uniform ones plus ones drawn
  from the batch's positives (so, by popularity), with the logQ correction for the sampling
  probability (Meta's generative-recommenders ``sampled-softmax-n128`` trains with 128 negatives);
  negatives equal to the row's positive (accidental hits) are masked.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainhub.engine.runtime import forward_through, unwrap_model
from trainhub.engine.task import StepOutput

__all__ = ["NextItemTask", "SeqBatch", "FullSoftmaxLoss", "SampledSoftmaxLoss", "NextItemMetrics", "next_tokens",
           "full_ranks", "build_seq_loss", "PAD", "SEQ_LOSSES"]

PAD = 0
SEQ_LOSSES = ("cross_entropy", "nce", "sampled_softmax")
DEFAULT_KS = (10, 50, 200)
_SCORE_BUDGET = 1 << 24  # scores held at once in validation/prediction (64 MB of float32)


# -- batches ------------------------------------------------------------------------------------------
@dataclass
class SeqBatch:
    """One batch, read once: tokens and time differences ``[B, L]``, the next item of every position
    ``next_items [B, L]`` (PAD where no loss applies) and the last position's target ``target [B]``."""

    tokens: torch.Tensor
    time_diffs: torch.Tensor | None
    next_items: torch.Tensor
    target: torch.Tensor

    @property
    def size(self) -> int:
        return self.tokens.shape[0]


def next_tokens(seq_tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` labels: position ``i`` predicts ``seq_tokens[:, i + 1]``, the last position
    ``targets``; 0 (no loss) wherever the current token is PAD. Per-position ``targets [B, L]`` are
    taken as the labels themselves."""
    if targets.dim() == 2 and targets.shape == seq_tokens.shape and seq_tokens.shape[1] > 1:
        labels = targets
    else:
        targets = targets.reshape(-1)
        if targets.shape[0] != seq_tokens.shape[0]:
            raise ValueError(f"targets {tuple(targets.shape)} do not match seq_tokens {tuple(seq_tokens.shape)}: "
                             "give one next item per sample [B] or one per position [B, L]")
        labels = torch.cat([seq_tokens[:, 1:], targets.unsqueeze(1).to(seq_tokens.dtype)], dim=1)
    return labels.masked_fill(seq_tokens.eq(PAD), PAD)


def read_batch(batch: Any) -> SeqBatch:
    """A ``(seq_tokens, seq_positions, seq_time_diffs, targets)`` tuple (or a dict with those keys)."""
    if isinstance(batch, dict):
        missing = [k for k in ("seq_tokens", "targets") if k not in batch]
        if missing:
            raise ValueError(f"a sequence batch dict needs {missing}; it has {sorted(batch)}")
        tokens, diffs, targets = batch["seq_tokens"], batch.get("seq_time_diffs"), batch["targets"]
    elif isinstance(batch, (tuple, list)) and len(batch) == 4:
        tokens, _positions, diffs, targets = batch
    else:
        kind = f"a {len(batch)}-tuple" if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise ValueError(f"sequence batches are (seq_tokens, seq_positions, seq_time_diffs, targets); got {kind}")
    if tokens.dim() != 2:
        raise ValueError(f"seq_tokens must be [B, L], got {tuple(tokens.shape)}")
    tokens = tokens.long()
    labels = next_tokens(tokens, targets.long())
    target = labels[:, -1] if targets.dim() == 2 and targets.shape == tokens.shape else targets.reshape(-1).long()
    return SeqBatch(tokens, diffs, labels, target)


# -- calling models -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _forward_takes_time(cls: type) -> bool:
    """Whether ``cls.forward`` takes a second positional argument (the time differences)."""
    try:
        params = list(inspect.signature(cls.forward).parameters.values())[1:]  # without self
    except (TypeError, ValueError):
        return True
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) >= 2


def sequence_logits(model: nn.Module, tokens: torch.Tensor, time_diffs: torch.Tensor | None) -> torch.Tensor:
    """``model(tokens, time_diffs)`` (``model(tokens)`` for a forward without time) -> ``[B, L, V]``."""
    if _forward_takes_time(type(unwrap_model(model))):
        return model(tokens, time_diffs)
    return model(tokens)


def has_encoder(model: nn.Module) -> bool:
    """Whether the model can encode and score separately (``encode`` and ``score`` methods)."""
    bare = unwrap_model(model)
    return callable(getattr(bare, "encode", None)) and callable(getattr(bare, "score", None))


def _vocab_size(model: nn.Module) -> int:
    bare = unwrap_model(model)
    size = getattr(bare, "vocab_size", None)
    if size is None:
        weights = getattr(bare, "item_embeddings", None)
        size = weights.shape[0] if isinstance(weights, torch.Tensor) else None
    if size is None:
        raise TypeError(f"{type(bare).__name__} has no vocab_size (nor item_embeddings [V, D]); sampled softmax "
                        "needs to know the number of items")
    return int(size)


def _chunks(num_rows: int, row_width: int, budget: int = _SCORE_BUDGET) -> list[slice]:
    step = max(1, budget // max(row_width, 1))
    return [slice(i, min(i + step, num_rows)) for i in range(0, num_rows, step)]


# -- objectives -----------------------------------------------------------------------------------------
class FullSoftmaxLoss:
    """Softmax cross-entropy over every item (PAD column excluded) of ``logits / temperature``.

    Torch-RecHub's ``loss_type="cross_entropy"`` (``nn.CrossEntropyLoss`` options ``ignore_index``,
    ``reduction``, ``label_smoothing``, ``weight``) and ``"nce"`` (``NCELoss``: ``temperature``,
    ``ignore_index``, ``reduction``). Rows whose label is PAD (or ``ignore_index``) take no loss.
    Calling it on ``(logits [N, V], labels [N])`` gives the loss, as upstream's ``loss_fn``.

    Unlike upstream, the PAD column is left out of the softmax rather than set to -1e9, so label
    smoothing spreads over real items only (upstream's smoothing term then costs about
    ``1e9 * label_smoothing / V``), and ``ignore_index`` other than 0 does not make PAD a target.
    """

    kind = "full"

    def __init__(self, temperature: float = 1.0, ignore_index: int = PAD, reduction: str = "mean",
                 label_smoothing: float = 0.0, weight: torch.Tensor | None = None):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum' (a training loss is one number), got {reduction!r}")
        self.temperature, self.ignore_index, self.reduction = float(temperature), int(ignore_index), reduction
        self.label_smoothing, self.weight = float(label_smoothing), weight

    def rows(self, labels: torch.Tensor) -> torch.Tensor:
        """Flat indices of the rows that take a loss."""
        keep = labels.reshape(-1) != PAD
        if self.ignore_index != PAD:
            keep &= labels.reshape(-1) != self.ignore_index
        return keep.nonzero().squeeze(1)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str | None = None) -> torch.Tensor:
        logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
        rows = self.rows(labels)
        return self.on_rows(logits.index_select(0, rows), labels.index_select(0, rows), reduction)

    def on_rows(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str | None = None) -> torch.Tensor:
        """Loss of rows that all take one: ``logits [N, V]`` (column 0 = PAD), ``labels [N]`` in ``1..V-1``."""
        reduction = reduction or self.reduction
        if logits.shape[0] == 0:
            return logits.sum() * 0.0  # no position with a target: nothing to learn, keep the graph
        scaled = logits[:, 1:] if self.temperature == 1.0 else logits[:, 1:] / self.temperature
        weight = None if self.weight is None else self.weight.to(logits.device)[1:]
        return F.cross_entropy(scaled.float() if scaled.dtype in (torch.float16, torch.bfloat16) else scaled,
                               labels - 1, weight=weight, reduction=reduction, label_smoothing=self.label_smoothing)

    def training_loss(self, model: nn.Module, batch: SeqBatch) -> torch.Tensor:
        rows = self.rows(batch.next_items)
        labels = batch.next_items.reshape(-1).index_select(0, rows)
        if has_encoder(model):  # score only rows that take a loss: left padding costs nothing
            logits = forward_through(model, _score_rows, batch.tokens, batch.time_diffs, rows)
        else:
            logits = sequence_logits(model, batch.tokens, batch.time_diffs)
            logits = logits.reshape(-1, logits.shape[-1]).index_select(0, rows)
        return self.on_rows(logits, labels)


def _score_rows(model: nn.Module, tokens: torch.Tensor, time_diffs: Any, rows: torch.Tensor) -> torch.Tensor:
    hidden = model.encode(tokens, time_diffs)
    return model.score(hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows), None)


class SampledSoftmaxLoss:
    """Softmax over each row's positive and ``K`` negatives shared by the batch, with logQ correction.

    Negatives: ``num_negatives`` drawn uniformly from the items ``1..V-1`` and ``in_batch_negatives``
    drawn from the batch's positives (each position equally likely, so items by their frequency in
    the batch). Every candidate's logit is divided by ``temperature`` and, with
    ``logq_correction``, reduced by ``log Q(item)``, ``Q`` the expected number of times the item is
    drawn as a negative (``in_batch * count_in_batch / N + num_negatives / (V - 1)``), so items are
    not penalised for being drawn often: the sampled softmax then estimates the full one
    (Bengio & Senecal 2008; Yi et al. 2019). A negative equal to the row's positive is masked.
    Needs a model with ``encode`` / ``score``; ``score(hidden [N, D], ids [K])`` must give ``[N, K]``.
    Called on full logits ``(logits [N, V], labels [N])`` it gives the full softmax cross-entropy
    (upstream's ``loss_fn`` use; also the validation loss).

    Memory and time grow with ``N * K``, not with the vocabulary. Item rows reached through a
    row-sparse table (:class:`trainhub.nn.FusedTable`) get row-sparse gradients, so a row-wise
    optimizer updates only the candidates' rows.
    """

    kind = "sampled"

    def __init__(self, num_negatives: int = 128, in_batch_negatives: int = 128, logq_correction: bool = True,
                 temperature: float = 1.0, ignore_index: int = PAD, reduction: str = "mean"):
        if num_negatives < 0 or in_batch_negatives < 0 or num_negatives + in_batch_negatives == 0:
            raise ValueError("sampled softmax needs num_negatives + in_batch_negatives > 0 (both >= 0), got "
                             f"{num_negatives} and {in_batch_negatives}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.num_negatives, self.in_batch_negatives = int(num_negatives), int(in_batch_negatives)
        self.logq_correction, self.temperature = bool(logq_correction), float(temperature)
        self.ignore_index, self.reduction = int(ignore_index), reduction
        self.full = FullSoftmaxLoss(ignore_index=ignore_index)  # validation loss

    rows = FullSoftmaxLoss.rows

    def sample(self, positives: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(negatives [K], log_q_negatives [K], log_q_positives [N])`` for the batch's positives
        ``[N]``. Draws from torch's global generator (saved and restored by resume)."""
        if vocab_size < 2:
            raise ValueError(f"sampled softmax needs at least one item, vocab_size is {vocab_size}")
        device = positives.device
        parts = []
        if self.num_negatives:
            parts.append(torch.randint(1, vocab_size, (self.num_negatives,), device=device))
        if self.in_batch_negatives and len(positives):
            parts.append(positives[torch.randint(0, len(positives), (self.in_batch_negatives,), device=device)])
        negatives = torch.cat(parts) if parts else positives.new_zeros(0)
        return negatives, self.log_q(negatives, positives, vocab_size), self.log_q(positives, positives, vocab_size)

    def log_q(self, items: torch.Tensor, positives: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """log of the expected number of draws of each of ``items`` as a negative."""
        expected = torch.full(items.shape, self.num_negatives / (vocab_size - 1), dtype=torch.float32,
                              device=items.device)
        if self.in_batch_negatives and len(positives):
            unique, counts = torch.unique(positives, return_counts=True)
            where = torch.searchsorted(unique, items).clamp(max=len(unique) - 1)
            count = torch.where(unique[where] == items, counts[where], torch.zeros_like(where))
            expected = expected + self.in_batch_negatives * count.float() / len(positives)
        return expected.log()

    def loss_from_logits(self, positive: torch.Tensor, negative: torch.Tensor, positives: torch.Tensor,
                         negatives: torch.Tensor, log_q_pos: torch.Tensor | None = None,
                         log_q_neg: torch.Tensor | None = None) -> torch.Tensor:
        """``positive [N]`` and ``negative [N, K]`` logits of items ``positives [N]`` / ``negatives [K]``."""
        positive, negative = positive.float() / self.temperature, negative.float() / self.temperature
        if self.logq_correction and log_q_pos is not None:
            positive, negative = positive - log_q_pos, negative - log_q_neg
        hits = negatives.unsqueeze(0) == positives.unsqueeze(1)  # [N, K] accidental hits
        logits = torch.cat([positive.unsqueeze(1), negative.masked_fill(hits, float("-inf"))], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device),
                               reduction=self.reduction)

    def training_loss(self, model: nn.Module, batch: SeqBatch) -> torch.Tensor:
        if not has_encoder(model):
            raise TypeError(f"loss_type='sampled_softmax' needs a model with encode(seq_tokens, time_diffs) and "
                            f"score(hidden, item_ids); {type(unwrap_model(model)).__name__} has only forward. "
                            "Use 'cross_entropy'")
        rows = self.rows(batch.next_items)
        positives = batch.next_items.reshape(-1).index_select(0, rows)
        negatives, log_q_neg, log_q_pos = self.sample(positives, _vocab_size(model))
        pos, neg = forward_through(model, _score_candidates, batch.tokens, batch.time_diffs, rows, positives,
                                   negatives)
        if len(positives) == 0:
            return pos.sum() * 0.0
        return self.loss_from_logits(pos, neg, positives, negatives, log_q_pos, log_q_neg)

    def on_rows(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str | None = None) -> torch.Tensor:
        return self.full.on_rows(logits, labels, reduction)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str | None = None) -> torch.Tensor:
        return self.full(logits, labels, reduction)


def _score_candidates(model: nn.Module, tokens: torch.Tensor, time_diffs: Any, rows: torch.Tensor,
                      positives: torch.Tensor, negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    hidden = model.encode(tokens, time_diffs)
    hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows)  # [N, D]
    positive = model.score(hidden, positives.unsqueeze(1)).reshape(-1)  # [N]
    negative = model.score(hidden, negatives)  # [N, K]
    if negative.shape != (hidden.shape[0], negatives.shape[0]):
        raise ValueError(f"{type(model).__name__}.score(hidden [N, D], item_ids [K]) must give [N, K] logits for "
                         f"candidates shared by every row; got {tuple(negative.shape)} for N={hidden.shape[0]}, "
                         f"K={negatives.shape[0]}")
    return positive, negative


_LOSS_PARAMS = {
    "cross_entropy": {"ignore_index", "reduction", "label_smoothing", "weight"},
    "nce": {"temperature", "ignore_index", "reduction"},
    "sampled_softmax": {"num_negatives", "in_batch_negatives", "logq_correction", "temperature", "ignore_index",
                        "reduction"},
}


def build_seq_loss(loss_type: str = "cross_entropy", loss_params: dict | None = None):
    """Torch-RecHub's ``loss_type`` / ``loss_params`` -> a loss object (``nce`` defaults to
    temperature 0.1, as upstream)."""
    if loss_type not in _LOSS_PARAMS:
        raise ValueError(f"loss_type must be one of {SEQ_LOSSES}, got {loss_type!r}")
    params = dict(loss_params or {})
    unknown = sorted(set(params) - _LOSS_PARAMS[loss_type])
    if unknown:
        raise ValueError(f"loss_params {unknown} are not options of loss_type={loss_type!r}; it takes "
                         f"{sorted(_LOSS_PARAMS[loss_type])}")
    if loss_type == "sampled_softmax":
        return SampledSoftmaxLoss(**params)
    if loss_type == "nce":
        params.setdefault("temperature", 0.1)
    return FullSoftmaxLoss(**params)


# -- metrics --------------------------------------------------------------------------------------------
def full_ranks(scores: torch.Tensor, targets: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
    """0-based rank of each row's target among all items: ``scores [U, V]``, ``targets [U]``.

    PAD (column 0) and, when given, the row's ``history [U, L]`` items are no competitors, but the
    target always is ranked (also when it is in the history). Ties count against the target, so a
    model that scores everything alike ranks it last, not first.
    """
    target_score = scores.gather(1, targets.reshape(-1, 1))  # [U, 1]
    ahead = scores >= target_score  # [U, V]
    ahead[:, PAD] = False
    if history is not None:
        ahead.scatter_(1, history.long(), False)
    ahead.scatter_(1, targets.reshape(-1, 1), False)  # not its own competitor
    return ahead.sum(dim=1)


class NextItemMetrics:
    """Exact full-ranking HR@K, NDCG@K and MRR@K of one target per row, plus upstream's
    ``top1_accuracy`` and the validation loss, as sums that ranks can add up."""

    def __init__(self, ks: Sequence[int] = DEFAULT_KS):
        if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
            raise ValueError(f"ks must be positive integers, got {ks!r}")
        self.ks = tuple(sorted(set(ks)))
        self.reset()

    def names(self) -> list[str]:
        return ["loss", "top1_accuracy"] + [f"{m}@{k}" for k in self.ks for m in ("hr", "ndcg", "mrr")]

    def reset(self) -> None:
        self.sums = {name: 0.0 for name in self.names()}
        self.counts = {"loss": 0.0, "top1_accuracy": 0, "users": 0}

    def add_loss(self, total: float, count: float) -> None:
        self.sums["loss"] += total
        self.counts["loss"] += count

    def add_scores(self, scores: torch.Tensor, targets: torch.Tensor, history: torch.Tensor | None) -> None:
        """Update with last-position ``scores [U, V]`` and ``targets [U]`` (PAD targets skip ranking)."""
        top1 = scores.detach().clone()
        top1[:, PAD] = float("-inf")
        self.sums["top1_accuracy"] += float((top1.argmax(dim=1) == targets).sum())
        self.counts["top1_accuracy"] += len(targets)
        has = targets != PAD
        if not bool(has.all()):
            scores, targets = scores[has], targets[has]
            history = history[has] if history is not None else None
        rank = full_ranks(scores, targets, history).double()
        for k in self.ks:
            hit = rank < k
            self.sums[f"hr@{k}"] += float(hit.sum())
            self.sums[f"ndcg@{k}"] += float((hit / torch.log2(rank + 2)).sum())
            self.sums[f"mrr@{k}"] += float((hit / (rank + 1)).sum())
        self.counts["users"] += len(targets)

    def sync(self, gather: Callable[[Any], list[Any]]) -> None:
        parts = gather((self.sums, self.counts))
        self.sums = {k: sum(p[0][k] for p in parts) for k in self.sums}
        self.counts = {k: sum(p[1][k] for p in parts) for k in self.counts}

    def compute(self) -> dict[str, float]:
        out = {}
        for name, total in self.sums.items():
            count = self.counts.get(name, self.counts["users"])
            out[name] = total / count if count else float("nan")
        return out


# -- the task -------------------------------------------------------------------------------------------
class NextItemTask:
    """Task for :func:`trainhub.engine.fit` that trains next-item prediction.

    Validation reports ``loss`` (the objective's softmax cross-entropy over every item, at every
    position with a target as upstream's ``evaluate``; at the last position only with
    ``val_loss_positions="last"``, the default for sampled softmax), ``top1_accuracy`` (upstream's:
    argmax of the last position, PAD excluded, over every sample) and exact ``hr@K``, ``ndcg@K`` and
    ``mrr@K`` of the last position's target ranked against every item, with the row's history
    items excluded when ``exclude_history`` (the SASRec/HSTU public protocol; the target itself
    always competes). Samples whose target is PAD are not ranked.

    Args:
        loss: ``"cross_entropy"``, ``"nce"``, ``"sampled_softmax"`` or a loss object.
        loss_params: options of the loss (see :func:`build_seq_loss`).
        ks: cut-offs of the ranking metrics.
        exclude_history: leave the history items out of the ranking.
        val_loss_positions: ``"all"``, ``"last"`` or None (``"last"`` for sampled softmax).
        score_budget: scores held at once in validation and prediction (users are scored in chunks).
    """

    def __init__(self, loss: Any = "cross_entropy", loss_params: dict | None = None, ks: Sequence[int] = DEFAULT_KS,
                 exclude_history: bool = True, val_loss_positions: str | None = None,
                 score_budget: int = _SCORE_BUDGET):
        self.loss = build_seq_loss(loss, loss_params) if isinstance(loss, str) else loss
        self.loss_type = loss if isinstance(loss, str) else type(loss).__name__
        if val_loss_positions is None:
            val_loss_positions = "last" if self.loss.kind == "sampled" else "all"
        if val_loss_positions not in ("all", "last"):
            raise ValueError(f"val_loss_positions must be 'all' or 'last', got {val_loss_positions!r}")
        self.val_loss_positions = val_loss_positions
        self.exclude_history = exclude_history
        self.score_budget = int(score_budget)
        self.metrics = NextItemMetrics(ks)

    # -- training --------------------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        b = read_batch(batch)
        return StepOutput(self.loss.training_loss(model, b), batch_size=b.size)

    # -- validation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def validation_step(self, model: nn.Module, batch: Any) -> None:
        b = read_batch(batch)
        history = b.tokens if self.exclude_history else None
        if has_encoder(model):
            bare = unwrap_model(model)
            hidden = bare.encode(b.tokens, b.time_diffs)  # [B, L, D]
            if self.val_loss_positions == "all":
                self._loss_all_positions(bare, hidden, b)
            last = hidden[:, -1]
            width = _vocab_size(model)
            for part in _chunks(b.size, width, self.score_budget):
                scores = bare.score(last[part], None)  # [c, V]
                self._add(scores, b.target[part], None if history is None else history[part])
            return
        logits = sequence_logits(model, b.tokens, b.time_diffs)  # [B, L, V]
        if self.val_loss_positions == "all":
            rows = self.loss.rows(b.next_items)
            flat = logits.reshape(-1, logits.shape[-1]).index_select(0, rows)
            labels = b.next_items.reshape(-1).index_select(0, rows)
            self.metrics.add_loss(float(self.loss.on_rows(flat, labels, "sum")), len(rows))
        self._add(logits[:, -1], b.target, history)

    def _loss_all_positions(self, model: nn.Module, hidden: torch.Tensor, b: SeqBatch) -> None:
        rows = self.loss.rows(b.next_items)
        labels = b.next_items.reshape(-1).index_select(0, rows)
        flat = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows)
        for part in _chunks(len(rows), _vocab_size(model), self.score_budget):
            loss = self.loss.on_rows(model.score(flat[part], None), labels[part], "sum")
            self.metrics.add_loss(float(loss), part.stop - part.start)

    def _add(self, scores: torch.Tensor, target: torch.Tensor, history: torch.Tensor | None) -> None:
        if self.val_loss_positions == "last":
            has = (target != PAD).nonzero().squeeze(1)
            if len(has):
                loss = self.loss.on_rows(scores.index_select(0, has), target.index_select(0, has), "sum")
                self.metrics.add_loss(float(loss), len(has))
        self.metrics.add_scores(scores.float(), target, history)

    def sync_metrics(self, gather: Callable[[Any], list[Any]]) -> None:
        self.metrics.sync(gather)

    def metric_names(self) -> list[str]:
        return self.metrics.names()

    def higher_is_better(self, name: str) -> bool | None:
        if name == "loss":
            return False
        return True if name in self.metrics.names() else None

    def compute_metrics(self) -> dict[str, float]:
        out = self.metrics.compute()
        self.metrics.reset()
        return out

    # -- prediction ------------------------------------------------------------------------------------
    @torch.no_grad()
    def top_k(self, model: nn.Module, tokens: torch.Tensor, time_diffs: torch.Tensor | None, k: int,
              exclude_history: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(item ids [B, k], scores [B, k])`` of the best next items after each row of ``tokens``,
        best first; PAD and (``exclude_history``) the row's items are never recommended. Slots
        beyond the items left to recommend hold PAD with score ``-inf``."""
        tokens = tokens.long()
        if has_encoder(model):
            bare = unwrap_model(model)
            last = bare.encode(tokens, time_diffs)[:, -1]

            def scorer(part: slice) -> torch.Tensor:
                return bare.score(last[part], None)

            width = _vocab_size(model)
        else:
            logits = sequence_logits(model, tokens, time_diffs)[:, -1]

            def scorer(part: slice) -> torch.Tensor:
                return logits[part]

            width = logits.shape[-1]
        ids, values = [], []
        for part in _chunks(len(tokens), width, self.score_budget):
            scores = scorer(part).float().clone()
            scores[:, PAD] = float("-inf")
            if exclude_history:
                scores.scatter_(1, tokens[part], float("-inf"))
            top = scores.topk(min(k, scores.shape[1]), dim=1)
            ids.append(top.indices.masked_fill(top.values == float("-inf"), PAD))
            values.append(top.values)
        return torch.cat(ids), torch.cat(values)


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Validated cut-offs (positive integers)."""
    return NextItemMetrics(ks).ks


def default_monitor(ks: Sequence[int]) -> str:
    """``ndcg@10`` when 10 is among ``ks``, else NDCG at the smallest cut-off."""
    ks = check_ks(ks)
    return f"ndcg@{10 if 10 in ks else ks[0]}"
