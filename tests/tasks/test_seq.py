"""Next-item task: masks, losses against naive references, full-ranking metrics against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainhub.nn.fused_table import FusedTable
from trainhub.tasks import FullSoftmaxLoss, NextItemTask, SampledSoftmaxLoss, build_seq_loss
from trainhub.tasks.seq import NextItemMetrics, full_ranks, next_tokens, read_batch


# -- stand-in models (the generative models live in trainhub.models.generative) -----------------------
class TinyNextItem(nn.Module):
    """Causal running mean of item embeddings -> tanh(linear); ``encode`` / ``score`` / ``forward``.

    ``fused=True`` keeps the item table in a row-sparse :class:`FusedTable`, read only by row lookups
    when scoring candidates (as a large-vocabulary model would)."""

    def __init__(self, vocab_size: int, dim: int = 8, max_seq_len: int = 32, fused: bool = False,
                 dropout: float = 0.0, time_scale: float = 0.0):
        super().__init__()
        self.vocab_size, self.max_seq_len, self.fused = vocab_size, max_seq_len, fused
        if fused:
            self.table = FusedTable({"item": vocab_size}, dim, padding_rows=[0])
            nn.init.normal_(self.table.weight, std=0.5)
            with torch.no_grad():
                self.table.weight[0].zero_()
        else:
            self.table = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.time_scale = time_scale

    @property
    def item_embeddings(self) -> torch.Tensor:
        return self.table.weight

    def _rows(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids.reshape(-1)).reshape(*ids.shape, -1)

    def encode(self, seq: torch.Tensor, time_diffs: torch.Tensor | None = None) -> torch.Tensor:
        x = self._rows(seq)
        mask = (seq != 0).unsqueeze(-1).float()
        mean = (x * mask).cumsum(1) / mask.cumsum(1).clamp_min(1.0)
        if time_diffs is not None and self.time_scale:
            mean = mean + self.time_scale * torch.log1p(time_diffs.float()).unsqueeze(-1)
        return self.dropout(torch.tanh(self.proj(mean)))

    def score(self, hidden: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        if item_ids is None:
            return hidden @ self.table.weight.T + self.bias
        rows = self._rows(item_ids)
        if item_ids.dim() == 1:  # candidates shared by every row
            return hidden @ rows.T + self.bias[item_ids]
        return (hidden.unsqueeze(-2) * rows).sum(-1) + self.bias[item_ids]

    def forward(self, seq: torch.Tensor, time_diffs: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(self.encode(seq, time_diffs))


class ForwardOnly(nn.Module):
    """A user's model with nothing but ``forward(seq, time_diffs) -> [B, L, V]``."""

    def __init__(self, vocab_size: int, dim: int = 8):
        super().__init__()
        self.inner = TinyNextItem(vocab_size, dim)

    def forward(self, seq, time_diffs):
        return self.inner(seq, time_diffs)


class TokensOnly(ForwardOnly):
    def forward(self, seq):  # no time differences at all
        return self.inner(seq)


def random_batch(batch: int = 6, length: int = 7, vocab: int = 15, seed: int = 0):
    """Left-padded token rows (one all-PAD row but the last slot), time diffs and targets."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, vocab, (batch, length), generator=g)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    lengths[0] = 1
    tokens = tokens.masked_fill(torch.arange(length) < (length - lengths).unsqueeze(1), 0)
    diffs = torch.randint(0, 1000, (batch, length), generator=g).masked_fill(tokens == 0, 0)
    targets = torch.randint(1, vocab, (batch,), generator=g)
    return tokens, torch.arange(length).expand(batch, length), diffs, targets


# -- masks ---------------------------------------------------------------------------------------------------
def test_next_tokens_shift_and_mask_by_the_current_token():
    tokens = torch.tensor([[0, 0, 5, 6], [1, 2, 3, 4]])
    labels = next_tokens(tokens, torch.tensor([7, 9]))
    # the last PAD slot of row 0 is followed by 5, but PAD -> item is never learnt
    assert labels.tolist() == [[0, 0, 6, 7], [2, 3, 4, 9]]
    assert next_tokens(tokens, torch.tensor([[7], [9]])).tolist() == labels.tolist()  # [B, 1] targets
    per_position = torch.tensor([[3, 3, 3, 3], [8, 8, 8, 8]])
    assert next_tokens(tokens, per_position).tolist() == [[0, 0, 3, 3], [8, 8, 8, 8]]
    with pytest.raises(ValueError, match="do not match seq_tokens"):
        next_tokens(tokens, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="seq_positions, seq_time_diffs, targets"):
        read_batch((tokens, tokens))


def test_pad_is_never_a_target_nor_a_class():
    loss = FullSoftmaxLoss(reduction="sum")
    logits = torch.zeros(1, 4, 10)
    logits[..., 0] = 100.0  # PAD's column is left out of the softmax altogether
    value = loss(logits, next_tokens(torch.tensor([[0, 0, 5, 6]]), torch.tensor([7])))
    assert float(value) == pytest.approx(2 * math.log(9.0))  # upstream's own test value
    assert float(loss(logits, torch.zeros(1, 4, dtype=torch.long))) == 0.0  # nothing to learn


# -- losses --------------------------------------------------------------------------------------------------
def naive_full_ce(logits, tokens, targets, temperature=1.0):
    """Upstream's formula, literally: column 0 at -1e9, CrossEntropy(ignore_index=0) over the shift."""
    labels = torch.cat([tokens[:, 1:], targets.unsqueeze(1)], 1).masked_fill(tokens == 0, 0)
    masked = logits.clone()
    masked[..., 0] = -1e9
    return F.cross_entropy(masked.reshape(-1, logits.shape[-1]) / temperature, labels.reshape(-1), ignore_index=0)


@pytest.mark.parametrize("loss_type, temperature", [("cross_entropy", 1.0), ("nce", 0.1)])
def test_full_softmax_losses_equal_upstream_formula(loss_type, temperature):
    tokens, _, diffs, targets = random_batch()
    logits = torch.randn(*tokens.shape, 15)
    loss = build_seq_loss(loss_type)
    assert loss.temperature == temperature
    expected = naive_full_ce(logits, tokens, targets, temperature)
    torch.testing.assert_close(loss(logits, next_tokens(tokens, targets)), expected)


def test_training_step_scores_only_target_rows_with_the_same_loss_as_forward():
    torch.manual_seed(0)
    model = TinyNextItem(15)
    batch = random_batch()
    task = NextItemTask("cross_entropy")
    via_encoder = task.training_step(model, batch).loss
    expected = naive_full_ce(model(batch[0], batch[2]), batch[0], batch[3])
    torch.testing.assert_close(via_encoder, expected)
    forward_only = ForwardOnly(15)
    forward_only.inner.load_state_dict(model.state_dict())
    torch.testing.assert_close(task.training_step(forward_only, batch).loss, expected)
    tokens_only = TokensOnly(15)
    tokens_only.inner.load_state_dict(model.state_dict())
    torch.testing.assert_close(task.training_step(tokens_only, batch).loss, expected)


def test_loss_params_are_checked():
    with pytest.raises(ValueError, match=r"\['temperature'\] are not options of loss_type='cross_entropy'"):
        build_seq_loss("cross_entropy", {"temperature": 0.5})
    with pytest.raises(ValueError, match="loss_type must be one of"):
        build_seq_loss("bpr")
    with pytest.raises(ValueError, match="reduction must be"):
        build_seq_loss("nce", {"reduction": "none"})
    smoothed = build_seq_loss("cross_entropy", {"label_smoothing": 0.1})
    logits = torch.randn(5, 9)
    value = smoothed(logits, torch.tensor([1, 2, 3, 4, 0]))
    assert math.isfinite(float(value)) and float(value) < 10  # smoothing over real items only


def brute_force_sampled(hidden, item_emb, bias, positives, negatives, log_q_pos, log_q_neg, temperature, correct):
    def logit(n, item, log_q):
        value = (hidden[n] @ item_emb[item] + bias[item]) / temperature
        return value - log_q if correct else value

    losses = []
    for n in range(len(positives)):
        terms = [logit(n, positives[n], log_q_pos[n])]
        terms += [logit(n, neg, log_q_neg[k]) for k, neg in enumerate(negatives) if neg != positives[n]]
        losses.append(-(terms[0] - torch.logsumexp(torch.stack(terms), 0)))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("correct", [True, False])
def test_sampled_softmax_equals_a_brute_force_reference_with_the_same_negatives(correct):
    torch.manual_seed(0)
    vocab = 30
    model = TinyNextItem(vocab)
    loss = SampledSoftmaxLoss(num_negatives=6, in_batch_negatives=5, logq_correction=correct, temperature=0.5)
    tokens, _, diffs, targets = random_batch(vocab=vocab)
    labels = next_tokens(tokens, targets)
    rows = loss.rows(labels)
    positives = labels.reshape(-1)[rows]
    negatives, log_q_neg, log_q_pos = loss.sample(positives, vocab)
    assert (negatives != 0).all() and len(negatives) == 11
    negatives[0] = positives[0]  # an accidental hit: masked for row 0
    log_q_neg = loss.log_q(negatives, positives, vocab)
    hidden = model.encode(tokens, diffs).reshape(-1, 8)[rows]
    pos = model.score(hidden, positives.unsqueeze(1)).reshape(-1)
    neg = model.score(hidden, negatives)
    got = loss.loss_from_logits(pos, neg, positives, negatives, log_q_pos, log_q_neg)
    expected = brute_force_sampled(hidden, model.table.weight, model.bias, positives.tolist(), negatives.tolist(),
                                   log_q_pos, log_q_neg, 0.5, correct)
    torch.testing.assert_close(got, expected)


def test_log_q_is_the_expected_number_of_draws():
    loss = SampledSoftmaxLoss(num_negatives=10, in_batch_negatives=4)
    positives = torch.tensor([3, 3, 5, 7])  # item 3: half the positions
    log_q = loss.log_q(torch.tensor([3, 5, 9]), positives, vocab_size=21)
    expected = torch.tensor([4 * 2 / 4 + 10 / 20, 4 * 1 / 4 + 10 / 20, 10 / 20]).log()
    torch.testing.assert_close(log_q, expected)
    # uniform negatives only: the correction is one constant, so it changes no loss
    uniform = SampledSoftmaxLoss(num_negatives=10, in_batch_negatives=0)
    plain = SampledSoftmaxLoss(num_negatives=10, in_batch_negatives=0, logq_correction=False)
    pos, neg = torch.randn(4), torch.randn(4, 10)
    negatives = torch.arange(1, 11)
    args = (pos, neg, positives, negatives, uniform.log_q(positives, positives, 21),
            uniform.log_q(negatives, positives, 21))
    torch.testing.assert_close(uniform.loss_from_logits(*args), plain.loss_from_logits(*args))


def test_sampled_softmax_training_step_and_its_requirements():
    torch.manual_seed(0)
    task = NextItemTask("sampled_softmax", {"num_negatives": 4, "in_batch_negatives": 3})
    out = task.training_step(TinyNextItem(15), random_batch())
    out.loss.backward()
    assert out.loss.requires_grad is True and math.isfinite(float(out.loss.detach()))
    with pytest.raises(TypeError, match="needs a model with encode"):
        task.training_step(ForwardOnly(15), random_batch())

    class FlatScores(TinyNextItem):
        def score(self, hidden, item_ids=None):
            scores = super().score(hidden, item_ids)
            return scores.reshape(-1) if item_ids is not None and item_ids.dim() == 1 else scores

    with pytest.raises(ValueError, match=r"must give \[N, K\] logits"):
        task.training_step(FlatScores(15), random_batch())


def test_sampled_softmax_touches_only_candidate_rows_of_a_row_sparse_table():
    from trainhub.optim import build_optimizer

    torch.manual_seed(0)
    model = TinyNextItem(1000, fused=True)
    before = model.table.weight.detach().clone()
    optimizer = build_optimizer(model.parameters(), torch.optim.Adam, {"lr": 0.1})
    task = NextItemTask("sampled_softmax", {"num_negatives": 5, "in_batch_negatives": 3})
    batch = random_batch(vocab=1000)
    torch.manual_seed(1)
    task.training_step(model, batch).loss.backward()
    assert model.table.weight.grad.is_sparse
    optimizer.step()
    optimizer.flush()
    changed = (model.table.weight != before).any(dim=1).nonzero().reshape(-1)
    torch.manual_seed(1)
    labels = next_tokens(batch[0], batch[3])
    negatives, _, _ = task.loss.sample(labels[labels != 0], 1000)
    touched = set(batch[0].unique().tolist()) | set(labels.unique().tolist()) | set(negatives.tolist())
    assert 0 < len(changed) <= len(touched) - 1 and set(changed.tolist()) <= touched - {0}


# -- metrics -------------------------------------------------------------------------------------------------
def brute_force_metrics(scores, targets, histories, ks, exclude):
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("hr", "ndcg", "mrr")}
    users = 0
    for s, t, h in zip(scores, targets, histories):
        if t == 0:
            continue
        users += 1
        candidates = [j for j in range(1, len(s)) if j == t or not (exclude and j in set(h))]
        ranked = sorted(candidates, key=lambda j: -s[j])
        rank = ranked.index(t)
        for k in ks:
            if rank < k:
                sums[f"hr@{k}"] += 1
                sums[f"ndcg@{k}"] += 1 / np.log2(rank + 2)
                sums[f"mrr@{k}"] += 1 / (rank + 1)
    return {k: v / users for k, v in sums.items()}


@pytest.mark.parametrize("exclude", [True, False])
def test_ranking_metrics_equal_brute_force(exclude):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 25)).astype(np.float32)
    targets = rng.integers(1, 25, 40)
    targets[3] = 0  # a sample without a target is not ranked
    histories = rng.integers(0, 25, (40, 6))
    histories[:10, 0] = targets[:10]  # targets in the history still compete
    metrics = NextItemMetrics((1, 5, 10))
    metrics.add_scores(torch.from_numpy(scores), torch.from_numpy(targets),
                       torch.from_numpy(histories) if exclude else None)
    got = metrics.compute()
    expected = brute_force_metrics(scores, targets, histories, (1, 5, 10), exclude)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    masked = scores.copy()
    masked[:, 0] = -np.inf
    assert got["top1_accuracy"] == pytest.approx(float(np.mean(masked.argmax(1) == targets)))


def test_ties_count_against_the_target():
    ranks = full_ranks(torch.zeros(2, 6), torch.tensor([2, 5]), torch.tensor([[0, 1], [0, 0]]))
    assert ranks.tolist() == [3, 4]  # everyone else (not PAD, not the history) is ahead


def forward_logits(model):
    class Fixed(nn.Module):
        def forward(self, seq, time_diffs):
            return model(seq, time_diffs)

    return Fixed()


@pytest.mark.parametrize("loss_type", ["cross_entropy", "nce", "sampled_softmax"])
def test_validation_is_chunk_size_independent_and_equals_brute_force(loss_type):
    torch.manual_seed(0)
    model = TinyNextItem(40).eval()
    batches = [random_batch(5, 6, 40, seed=s) for s in range(3)]

    def run(task, scored_model):
        for b in batches:
            task.validation_step(scored_model, b)
        return task.compute_metrics()

    whole = run(NextItemTask(loss_type, ks=(1, 5, 10)), model)
    chunked = run(NextItemTask(loss_type, ks=(1, 5, 10), score_budget=40 * 2), model)  # two users at a time
    forward_only = run(NextItemTask(loss_type, ks=(1, 5, 10), score_budget=1), forward_logits(model))
    for key in whole:
        assert chunked[key] == pytest.approx(whole[key], rel=1e-6), key
        assert forward_only[key] == pytest.approx(whole[key], rel=1e-6), key
    with torch.no_grad():
        scores = torch.cat([model(b[0], b[2])[:, -1] for b in batches]).numpy()
    targets = torch.cat([b[3] for b in batches]).numpy()
    histories = torch.cat([b[0] for b in batches]).numpy()
    for key, value in brute_force_metrics(scores, targets, histories, (1, 5, 10), True).items():
        assert whole[key] == pytest.approx(value), key
    with torch.no_grad():
        if loss_type == "sampled_softmax":  # validation loss at the last position
            expected = F.cross_entropy(torch.from_numpy(scores)[:, 1:], torch.from_numpy(targets) - 1)
        else:
            expected = torch.stack([naive_full_ce(model(b[0], b[2]), b[0], b[3], 0.1 if loss_type == "nce" else 1.0)
                                    * (next_tokens(b[0], b[3]) != 0).sum() for b in batches]).sum() / sum(
                int((next_tokens(b[0], b[3]) != 0).sum()) for b in batches)
    assert whole["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_metrics_sync_adds_every_ranks_share():
    torch.manual_seed(0)
    model = TinyNextItem(40).eval()
    batches = [random_batch(5, 6, 40, seed=s) for s in range(4)]
    one = NextItemTask(ks=(5,))
    for b in batches:
        one.validation_step(model, b)
    ranks = [NextItemTask(ks=(5,)), NextItemTask(ks=(5,))]
    for i, b in enumerate(batches):
        ranks[i % 2].validation_step(model, b)
    states = [(r.metrics.sums, r.metrics.counts) for r in ranks]
    ranks[0].sync_metrics(lambda obj: states)
    expected, got = one.compute_metrics(), ranks[0].compute_metrics()
    assert got == pytest.approx(expected)


def test_metric_names_and_directions():
    task = NextItemTask(ks=(10, 50))
    assert task.metric_names() == ["loss", "top1_accuracy", "hr@10", "ndcg@10", "mrr@10", "hr@50", "ndcg@50",
                                   "mrr@50"]
    assert task.higher_is_better("ndcg@10") is True and task.higher_is_better("loss") is False
    assert task.higher_is_better("auc") is None
    with pytest.raises(ValueError, match="ks must be positive integers"):
        NextItemTask(ks=(0,))


def test_top_k_filters_pad_and_history():
    torch.manual_seed(0)
    model = TinyNextItem(12).eval()
    tokens = torch.tensor([[0, 3, 4], [1, 2, 5]])
    task = NextItemTask(score_budget=12)
    ids, scores = task.top_k(model, tokens, None, k=11)
    assert ids.shape == (2, 11)
    for row, history in zip(ids.tolist(), tokens.tolist()):
        real = [i for i in row if i]
        assert len(real) == 11 - len({h for h in history if h}) and not set(real) & set(history)
    with torch.no_grad():
        full = model(tokens)[:, -1]
    full[:, 0] = -np.inf
    full.scatter_(1, tokens, -np.inf)
    torch.testing.assert_close(task.top_k(model, tokens, None, k=3)[0], full.topk(3).indices)
