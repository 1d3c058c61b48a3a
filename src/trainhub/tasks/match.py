"""Retrieval training: point-wise, pair-wise and list-wise objectives, and in-batch negatives.

Torch-RecHub's ``mode=0|1|2`` and ``in_batch_neg`` switches become two small strategy objects
chosen once by :class:`trainhub.trainers.MatchTrainer`:

* an **objective** (:class:`PointwiseBCE`, :class:`PairwiseBPR`, :class:`ListwiseSoftmax`) turns
  model outputs (or in-batch candidate scores) into a loss, and owns how those outputs are scored
  in validation and returned by ``predict``;
* a **candidate source**: the model's own output, or :class:`InBatchNegatives`, which scores every
  user of the batch against every item of the batch through the tower protocol
  (``user_tower`` / ``item_tower`` / ``temperature``).

Model outputs understood:

* logits ``[B]`` (point-wise);
* ``(pos [B], neg [B] or [B, K])`` or, per position, ``(pos [B, L], neg [B, L], mask [B, L])``;
* candidate logits ``[B, C]`` whose target column is ``y`` (all zeros: positive first).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from trainhub.engine.runtime import all_gather_rows, forward_through, unwrap_model
from trainhub.engine.task import StepOutput
from trainhub.metrics import BinaryAUC
from trainhub.nn.multi_interest import interest_scores
from trainhub.tasks.ctr import check_binary_labels, split_batch
from trainhub.tasks.regularization import add_penalty

__all__ = [
    "Candidates",
    "PointwiseBCE",
    "PairwiseBPR",
    "ListwiseSoftmax",
    "AllInBatch",
    "InBatchNegatives",
    "MatchTask",
    "MatchScores",
    "bpr_loss",
    "objective_for_mode",
]


class Candidates:
    """Scores of one positive and ``K`` negatives per row: ``pos [N]``, ``neg [N, K]``, ``valid [N, K]``."""

    def __init__(self, pos: torch.Tensor, neg: torch.Tensor, valid: torch.Tensor | None = None):
        self.pos = pos
        self.neg = neg
        self.valid = torch.ones_like(neg, dtype=torch.bool) if valid is None else valid

    @classmethod
    def from_output(cls, out: Any, y: torch.Tensor | None = None) -> "Candidates":
        """Read a pair-wise tuple or list-wise ``[B, C]`` logits (target column ``y``, default 0)."""
        if isinstance(out, (tuple, list)):
            if len(out) not in (2, 3):
                raise ValueError(f"expected (pos, neg) or (pos, neg, mask) from the model, got {len(out)} outputs")
            pos, neg = out[0], out[1]
            mask = out[2] if len(out) == 3 else None
            if neg.dim() == pos.dim():
                neg = neg.unsqueeze(-1)  # one negative per positive
            if neg.shape[:-1] != pos.shape:
                raise ValueError(f"negative scores {tuple(neg.shape)} do not match positive scores {tuple(pos.shape)}")
            pos, neg = pos.reshape(-1), neg.reshape(-1, neg.shape[-1])
            valid = None
            if mask is not None:  # per-position outputs: padding positions take no part
                valid = mask.reshape(-1, 1).expand_as(neg).bool()
            return cls(pos, neg, valid)
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] < 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"expected candidate logits [B, 1+K] (positive first) or (pos, neg) scores, got {shape}")
        batch, num = out.shape
        target = torch.zeros(batch, dtype=torch.long, device=out.device) if y is None else _targets(y, num)
        rows = torch.arange(batch, device=out.device)
        others = torch.arange(num, device=out.device).unsqueeze(0) != target.unsqueeze(1)  # [B, C]
        neg = out.masked_select(others).view(batch, num - 1)
        return cls(out[rows, target], neg, valid=neg > float("-inf"))  # -inf marks a masked candidate

    def logits(self) -> torch.Tensor:
        """``[N, 1 + K]``, positive first, invalid negatives at ``-inf`` (they drop out of a softmax)."""
        return torch.cat([self.pos.unsqueeze(1), self.neg.masked_fill(~self.valid, float("-inf"))], dim=1)

    def row_auc(self) -> tuple[float, int]:
        """Sum over rows of the fraction of valid negatives scored below the positive (ties half), and #rows."""
        above = (self.pos.unsqueeze(1) > self.neg).float() + 0.5 * (self.pos.unsqueeze(1) == self.neg).float()
        counts = self.valid.sum(dim=1)
        has = counts > 0
        per_row = (above * self.valid).sum(dim=1)[has] / counts[has]
        return float(per_row.sum()), int(has.sum())


def _targets(y: torch.Tensor, num: int) -> torch.Tensor:
    y = y.reshape(-1)
    if y.is_floating_point():
        if bool((y != y.round()).any()):
            raise ValueError("list-wise targets must be integer column indices (0 = positive first)")
    y = y.long()
    bad = (y < 0) | (y >= num)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"list-wise target {int(y[row])} at row {row} is outside the {num} candidate columns")
    return y


def bpr_loss(c: Candidates) -> torch.Tensor:
    """``mean(-log sigmoid(pos - neg))`` over valid (positive, negative) pairs."""
    losses = -F.logsigmoid(c.pos.unsqueeze(1) - c.neg)  # [N, K]
    valid = c.valid.to(losses.dtype)
    return (losses * valid).sum() / valid.sum().clamp_min(1.0)


def _softmax_ce(c: Candidates) -> torch.Tensor:
    if isinstance(c, AllInBatch):
        return c.softmax_ce()
    logits = c.logits()
    has_valid = c.valid.any(dim=1)
    if not bool(has_valid.all()):  # a row without negatives teaches nothing (and its CE would be 0 anyway)
        logits = logits[has_valid]
    if logits.shape[0] == 0:
        return c.pos.sum() * 0.0
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))


class MatchScores:
    """Validation state of a matching task: ROC AUC of labelled pairs, or the mean per-row AUC of
    candidate scores (the fraction of negatives scored below the positive)."""

    higher_is_better = True

    def __init__(self) -> None:
        self.pairs = BinaryAUC()
        self.reset()

    def reset(self) -> None:
        self.pairs.reset()
        self.row_auc, self.rows = 0.0, 0

    def add_pairs(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.pairs.update(probs, labels)

    def add_candidates(self, cands: "Candidates") -> None:
        total, rows = cands.row_auc()
        self.row_auc += total
        self.rows += rows

    def sync(self, gather) -> None:
        self.pairs.sync(gather)
        parts = gather((self.row_auc, self.rows))
        self.row_auc, self.rows = sum(p[0] for p in parts), sum(p[1] for p in parts)

    def compute(self, seen: int) -> float:
        """The AUC of what was added (NaN when no batch was scored: ``seen`` rows)."""
        if self.rows:
            return self.row_auc / self.rows
        return self.pairs.compute() if seen else float("nan")


class PointwiseBCE:
    """Mode 0: binary cross-entropy with logits on labelled (user, item) pairs (``y`` in {0, 1}).

    With in-batch negatives it uses softmax cross-entropy over the candidates, like Torch-RecHub.
    Validation scores the labelled pairs (ROC AUC); ``predict`` returns probabilities ``[B]``.
    """

    name = "point-wise"
    needs_labels = True

    def loss(self, out: Any, y: torch.Tensor | None) -> torch.Tensor:
        if y is None:
            raise ValueError("point-wise training (mode=0) needs 0/1 labels in the batches")
        logits = _pointwise_logits(out)
        y = check_binary_labels(y)
        if logits.shape != y.shape:
            raise ValueError(f"model returned {tuple(logits.shape)} logits for {tuple(y.shape)} labels")
        return F.binary_cross_entropy_with_logits(logits, y)

    def candidate_loss(self, c: Candidates) -> torch.Tensor:
        return _softmax_ce(c)

    def score(self, out: Any, y: torch.Tensor | None, scores: MatchScores) -> None:
        scores.add_pairs(torch.sigmoid(_pointwise_logits(out)), check_binary_labels(y))

    def predict(self, out: Any) -> torch.Tensor:
        return torch.sigmoid(_pointwise_logits(out))


class _CandidateObjective:
    """Objectives over candidate scores: validation scores each row's candidates (per-row AUC);
    ``predict`` returns candidate scores ``[B, 1+K]``, positive first."""

    #: whether ``y`` names each row's target column (list-wise) rather than being ignored
    reads_target = False

    def score(self, out: Any, y: torch.Tensor | None, scores: MatchScores) -> None:
        scores.add_candidates(Candidates.from_output(out, y if self.reads_target else None))

    def predict(self, out: Any) -> torch.Tensor:
        if isinstance(out, torch.Tensor):
            return out
        return Candidates.from_output(out).logits()


class PairwiseBPR(_CandidateObjective):
    """Mode 1: BPR, ``-log sigmoid(pos - neg)``, with one or ``K`` negatives per positive (``y`` unused)."""

    name = "pair-wise"
    needs_labels = False

    def loss(self, out: Any, y: torch.Tensor | None) -> torch.Tensor:
        return bpr_loss(Candidates.from_output(out))

    def candidate_loss(self, c: Candidates) -> torch.Tensor:
        return bpr_loss(c)


class ListwiseSoftmax(_CandidateObjective):
    """Mode 2: softmax cross-entropy over candidates; the target column is ``y`` (zeros: positive first).

    Full-softmax models (NARM, STAMP) return ``[B, num_items]`` and take ``y`` = target item ids.
    """

    name = "list-wise"
    needs_labels = False
    reads_target = True

    def loss(self, out: Any, y: torch.Tensor | None) -> torch.Tensor:
        if isinstance(out, torch.Tensor):
            if out.dim() != 2:
                raise ValueError(f"list-wise training expects logits [B, C], got {tuple(out.shape)}")
            target = (torch.zeros(out.shape[0], dtype=torch.long, device=out.device) if y is None
                      else _targets(y, out.shape[1]))
            return F.cross_entropy(out, target)
        return _softmax_ce(Candidates.from_output(out))

    def candidate_loss(self, c: Candidates) -> torch.Tensor:
        return _softmax_ce(c)


def _pointwise_logits(out: Any) -> torch.Tensor:
    if isinstance(out, (tuple, list)) or (isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] > 1):
        raise ValueError("point-wise training (mode=0) needs a model returning one logit per row [B]; "
                         "this model returns candidate scores, use mode=1 or mode=2")
    return out.reshape(-1)


def objective_for_mode(mode: int):
    """Torch-RecHub's ``mode`` int -> objective object."""
    objectives = {0: PointwiseBCE, 1: PairwiseBPR, 2: ListwiseSoftmax}
    if mode not in objectives:
        raise ValueError(f"mode must be 0 (point-wise), 1 (pair-wise) or 2 (list-wise), got {mode!r}")
    return objectives[mode]()


class InBatchNegatives:
    """Use the other items of the batch as each user's negatives.

    Every user is scored against every item of the batch with ``user_tower`` / ``item_tower``
    (multi-interest users take their best interest per item), divided by the model's
    ``temperature``. Items identical to the row's own positive (equal embeddings, e.g. the same
    id in two rows) are never used as its negatives. All of it is batched tensor work.

    Under DistributedDataParallel (training) the towers run inside DDP's forward, and the item
    embeddings of every rank are gathered with their gradients, so each user is scored against
    the items of the combined batch of all ranks (row ``i`` of rank ``r`` has its positive at
    column ``r * B + i``; a short last batch is fine). With all negatives (``num_negatives=None``)
    or hard negatives, the loss and gradients equal one process's on the combined batch; random
    subsets are drawn per rank, so they match in distribution only. Validation runs on the bare
    model and uses the items of the rank's own batch.

    Args:
        num_negatives: negatives per row; ``None`` (or a value outside ``[1, B-1]``) uses all
            other items of the batch.
        hard: pick the highest-scoring negatives instead of uniform random ones.
        seed: seed of the sampling generator (deterministic runs).
    """

    def __init__(self, num_negatives: int | None = None, hard: bool = False, seed: int | None = None):
        self.num_negatives = num_negatives
        self.hard = hard
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)

    @staticmethod
    def check_model(model: nn.Module) -> None:
        base = unwrap_model(model)
        missing = [m for m in ("user_tower", "item_tower") if not callable(getattr(base, m, None))]
        if missing:
            raise TypeError(f"in-batch negatives need a two-tower model with user_tower(x) and item_tower(x); "
                            f"{type(base).__name__} lacks {missing}")

    def __call__(self, model: nn.Module, x: dict[str, torch.Tensor], sample: bool = True) -> Candidates:
        # The towers are plain methods: DataParallel only wraps forward, so they run on the bare
        # model; under DDP they run inside its forward so that their gradients are averaged.
        user, item = forward_through(model, _towers, x)
        if item.dim() == 3 and item.shape[1] == 1:
            item = item.squeeze(1)
        if item.dim() != 2 or user.dim() not in (2, 3) or user.shape[0] != item.shape[0]:
            raise ValueError(f"in-batch negatives need user [B, D] or [B, K, D] and item [B, D] embeddings, got "
                             f"{tuple(user.shape)} and {tuple(item.shape)}")
        offset = 0
        if isinstance(model, nn.parallel.DistributedDataParallel):
            item, offset = all_gather_rows(item)  # [N, D]: every rank's items, with gradients
        base = unwrap_model(model)
        # The users are divided, not the [B, N] scores: fewer elements, and a positive factor
        # commutes with the best-interest max. A tensor temperature (maybe learnable) always divides.
        temperature = getattr(base, "temperature", 1.0)
        if isinstance(temperature, torch.Tensor):
            user = user / temperature.to(user.dtype)
        elif temperature != 1.0:
            user = user / temperature
        scores = interest_scores(user, item)  # [B, N]
        batch, total = scores.shape
        rows = torch.arange(batch, device=scores.device)
        positive = scores[rows, rows + offset]
        groups = _row_groups(item.detach())  # [N]: equal ids <=> identical item embeddings
        k = self.num_negatives
        if k is None or not 1 <= k <= total - 1 or not sample:
            k = total - 1
        if k == 0:
            return Candidates(positive, scores.new_zeros(batch, 0))
        if k == total - 1:
            # Every other item is a negative: the whole row, instead of sorting keys to pick all.
            return AllInBatch(scores, positive, groups, offset)
        # Same item as the row's positive (including the positive itself): never a negative.
        same = _same_as(groups, offset, batch)  # [B, N]
        if self.hard and sample:
            keys = scores.detach().masked_fill(same, float("-inf"))
            idx = keys.topk(k, dim=1).indices
        else:
            keys = torch.rand(batch, total, generator=self.generator).to(scores.device)
            if not sample:
                keys = torch.arange(total, device=scores.device, dtype=keys.dtype).expand(batch, -1).clone()
            idx = keys.masked_fill(same, float("inf")).topk(k, dim=1, largest=False).indices
        valid = ~same.gather(1, idx)
        return Candidates(positive, scores.gather(1, idx), valid)


def _towers(model: nn.Module, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return model.user_tower(x), model.item_tower(x)


_ROW_HASH_WEIGHTS: dict[tuple[int, str], torch.Tensor] = {}


def _row_groups(item: torch.Tensor) -> torch.Tensor:
    """Per row, a group id shared exactly by the rows with identical values (``torch.unique(item,
    dim=0, return_inverse=True)[1]`` up to numbering).

    Rows are hashed from their bits and the groups verified against each group's first row, so the
    result is exact; ``unique(dim=0)`` itself compares rows one pair at a time on the CPU and was a
    tenth of an in-batch training step.
    """
    if item.dtype not in (torch.float32, torch.int32) or item.dim() != 2:
        return torch.unique(item, dim=0, return_inverse=True)[1]
    key = (item.shape[1], str(item.device))
    if key not in _ROW_HASH_WEIGHTS:
        g = torch.Generator().manual_seed(0x5EED)
        _ROW_HASH_WEIGHTS[key] = (torch.randint(1, 2**62, (item.shape[1],), generator=g) * 2 + 1).to(item.device)
    bits = item.contiguous().view(torch.int32).long()  # [N, D]
    inverse = torch.unique((bits * _ROW_HASH_WEIGHTS[key]).sum(dim=1), return_inverse=True)[1]
    first = torch.full((int(inverse.max()) + 1,), item.shape[0], dtype=torch.long, device=item.device)
    first.scatter_reduce_(0, inverse, torch.arange(item.shape[0], device=item.device), reduce="amin")
    if not bool((bits == bits[first[inverse]]).all()):  # a hash collision: fall back to the exact sort
        return torch.unique(item, dim=0, return_inverse=True)[1]
    return inverse


def _same_as(groups: torch.Tensor, offset: int, batch: int) -> torch.Tensor:
    """``[B, N]``: true where column ``j`` holds the same item as row ``i``'s positive (column
    ``offset + i``), the positive itself included."""
    return groups[offset:offset + batch].unsqueeze(1) == groups.unsqueeze(0)


class AllInBatch(Candidates):
    """In-batch candidates where every other item of the batch is a negative: the user-item score
    matrix ``[B, N]`` itself, row ``i``'s positive at column ``offset + i``, and the items' groups
    of identical rows (``[N]``), which mark the columns that repeat a row's positive.

    The softmax cross-entropy is taken on the score matrix directly (the negatives and their
    validity mask, ``[B, N]`` each, are built only when something asks for them): one
    ``cross_entropy``, with a per-row correction when items repeat in the batch.
    """

    def __init__(self, scores: torch.Tensor, positive: torch.Tensor, groups: torch.Tensor, offset: int):
        self.scores, self.pos, self.groups, self.offset = scores, positive, groups, offset
        self._valid: torch.Tensor | None = None

    @property
    def neg(self) -> torch.Tensor:
        return self.scores

    @property
    def valid(self) -> torch.Tensor:
        if self._valid is None:
            self._valid = ~_same_as(self.groups, self.offset, self.scores.shape[0])
        return self._valid

    def softmax_ce(self) -> torch.Tensor:
        """The mean over rows of ``-log softmax`` of the positive against its valid negatives."""
        batch, total = self.scores.shape
        distinct = int(self.groups.max()) + 1 if total else 0
        if batch == 0 or distinct <= 1:  # no row, or no row with a negative
            return _softmax_ce(Candidates(self.pos, self.neg, self.valid))
        target = torch.arange(batch, device=self.scores.device) + self.offset
        if distinct == total:
            return F.cross_entropy(self.scores, target)
        # Repeated items: a repeat of the row's positive is no negative. Its column holds exactly
        # the positive's score (same embedding), so leaving the r repeats out of the softmax is
        #   loss = CE_all + log(1 - r * p),   p = exp(-CE_all), the positive's share over all columns,
        # per row, with no [B, N] mask. The gradient then reaches the repeats' columns as well as the
        # positive's. For a repeat of the same item (the same id twice in a batch) that changes no
        # parameter's gradient: both columns are the same function of the parameters, and their
        # gradients add up to the positive's gradient with the mask. (Two different items whose
        # embeddings happen to be bitwise equal share that gradient between them instead.)
        ce = F.cross_entropy(self.scores, target, reduction="none")  # [B]
        row_groups = self.groups[self.offset:self.offset + batch]
        repeats = torch.bincount(self.groups, minlength=distinct)[row_groups] - 1  # [B]
        return (ce + torch.log1p(-repeats.to(ce.dtype) * torch.exp(-ce))).mean()


class MatchTask:
    """Task for :func:`trainhub.engine.fit` that trains a matching model.

    Validation reports ``auc``: for point-wise outputs the ROC AUC of the labelled pairs; for
    candidate outputs (pair-/list-wise, or in-batch) the mean over rows of the fraction of
    negatives scored below the positive (each row's AUC). Also ``loss``.

    Args:
        objective: :class:`PointwiseBCE`, :class:`PairwiseBPR` or :class:`ListwiseSoftmax`.
        negatives: optional :class:`InBatchNegatives`; the model's own output is used otherwise.
        regularization: callable ``model -> penalty`` added to the loss.
    """

    def __init__(self, objective, negatives: InBatchNegatives | None = None,
                 regularization: Callable[[nn.Module], Any] | None = None):
        self.objective = objective
        self.negatives = negatives
        self.regularization = regularization
        self._scores = MatchScores()
        self._reset_state()

    def _reset_state(self) -> None:
        self._scores.reset()
        self._loss_sum, self._seen = 0.0, 0

    def _loss(self, model: nn.Module, x: dict, y: torch.Tensor | None, sample: bool) -> tuple[torch.Tensor, Any]:
        if self.negatives is not None:
            cands = self.negatives(model, x, sample=sample)
            return self.objective.candidate_loss(cands), cands
        out = model(x)
        return self.objective.loss(out, y), out

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        x, y = split_batch(batch)
        loss, _ = self._loss(model, x, y, sample=True)
        parts = {}
        loss, _ = add_penalty(loss, model, self.regularization, parts)
        return StepOutput(loss, parts, batch_size=_batch_size(x))

    def validation_step(self, model: nn.Module, batch: Any) -> None:
        x, y = split_batch(batch)
        loss, out = self._loss(model, x, y, sample=False)
        n = _batch_size(x)
        self._loss_sum += float(loss) * n
        self._seen += n
        if self.negatives is not None:
            self._scores.add_candidates(out)  # in-batch candidates, whatever the objective
        else:
            self.objective.score(out, y, self._scores)

    def sync_metrics(self, gather) -> None:
        self._scores.sync(gather)
        parts = gather((self._loss_sum, self._seen))
        self._loss_sum, self._seen = sum(p[0] for p in parts), sum(p[1] for p in parts)

    def metric_names(self) -> list[str]:
        return ["auc", "loss"]

    def higher_is_better(self, name: str) -> bool | None:
        return {"auc": self._scores.higher_is_better, "loss": False}.get(name)

    def compute_metrics(self) -> dict[str, float]:
        auc = self._scores.compute(self._seen)
        metrics = {"auc": auc, "loss": self._loss_sum / self._seen if self._seen else float("nan")}
        self._reset_state()
        return metrics

    @torch.no_grad()
    def predict_step(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Point-wise: probabilities ``[B]``; otherwise candidate scores ``[B, 1+K]`` (positive first)."""
        x, _ = split_batch(batch)
        if self.negatives is not None:
            return self.negatives(model, x, sample=False).logits()
        return self.objective.predict(model(x))


def _batch_size(x: dict) -> int:
    return len(next(iter(x.values())))
