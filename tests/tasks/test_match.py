"""Objectives and in-batch negatives of the matching task, checked against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainhub.tasks.match import (
    AllInBatch,
    Candidates,
    InBatchNegatives,
    ListwiseSoftmax,
    MatchTask,
    PairwiseBPR,
    PointwiseBCE,
    objective_for_mode,
)


def test_objective_for_mode_maps_ints_and_rejects_others():
    assert isinstance(objective_for_mode(0), PointwiseBCE)
    assert isinstance(objective_for_mode(1), PairwiseBPR)
    assert isinstance(objective_for_mode(2), ListwiseSoftmax)
    with pytest.raises(ValueError, match="mode must be 0"):
        objective_for_mode(3)


def test_pointwise_is_bce_with_logits_and_checks_labels():
    logits, y = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 0.0])
    expected = -(math.log(1 / (1 + math.exp(-2))) + math.log(1 - 1 / (1 + math.exp(1)))
                 + math.log(1 - 1 / (1 + math.exp(-0.5)))) / 3
    assert PointwiseBCE().loss(logits, y).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="found 2 at row 1"):
        PointwiseBCE().loss(logits, torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="use mode=1 or mode=2"):
        PointwiseBCE().loss(torch.zeros(3, 4), y)


def test_bpr_with_one_and_many_negatives():
    pos, neg = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    expected = (-math.log(1 / (1 + math.exp(-1))) - math.log(1 / (1 + math.exp(1)))) / 2
    assert PairwiseBPR().loss((pos, neg), None).item() == pytest.approx(expected, rel=1e-6)
    neg_k = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    pairs = [1 - 0, 1 - 2, 0 - 1, 0 - 1]
    expected_k = sum(-math.log(1 / (1 + math.exp(-d))) for d in pairs) / 4
    assert PairwiseBPR().loss((pos, neg_k), None).item() == pytest.approx(expected_k, rel=1e-6)
    # [B, 1+K] logits are read as positive first.
    assert PairwiseBPR().loss(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]]), None).item() == pytest.approx(
        expected_k, rel=1e-6)


def test_bpr_per_position_mask_ignores_padding():
    pos = torch.tensor([[1.0, 9.0], [0.0, 9.0]])
    neg = torch.tensor([[0.0, -9.0], [1.0, -9.0]])
    mask = torch.tensor([[True, False], [True, False]])
    expected = PairwiseBPR().loss((pos[:, 0], neg[:, 0]), None)
    assert PairwiseBPR().loss((pos, neg, mask), None).item() == pytest.approx(expected.item(), rel=1e-6)


def test_listwise_uses_target_column():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
    assert ListwiseSoftmax().loss(logits, torch.zeros(2)).item() == pytest.approx(
        F.cross_entropy(logits, torch.tensor([0, 0])).item())
    assert ListwiseSoftmax().loss(logits, torch.tensor([0, 2])).item() == pytest.approx(
        F.cross_entropy(logits, torch.tensor([0, 2])).item())
    with pytest.raises(ValueError, match="target 5 at row 1"):
        ListwiseSoftmax().loss(logits, torch.tensor([0, 5]))


def test_candidates_row_auc_counts_ties_half():
    c = Candidates(torch.tensor([1.0, 0.0]), torch.tensor([[0.0, 1.0, 2.0], [0.0, -1.0, -2.0]]))
    total, rows = c.row_auc()
    assert rows == 2 and total == pytest.approx((1.5 / 3) + (2.5 / 3))


class _Towers(nn.Module):
    """Users and items are looked-up vectors; the 'item' id is x['item']."""

    def __init__(self, user, item, temperature=1.0, multi=False):
        super().__init__()
        self.user, self.item, self.temperature, self.multi = user, item, temperature, multi
        self.mode = None

    def user_tower(self, x):
        return self.user[x["user"]]

    def item_tower(self, x):
        return self.item[x["item"]]


def test_in_batch_scores_honour_temperature_and_exclude_the_diagonal():
    torch.manual_seed(0)
    user, item = torch.randn(4, 3), torch.randn(4, 3)
    x = {"user": torch.arange(4), "item": torch.arange(4)}
    cands = InBatchNegatives()(_Towers(user, item, temperature=0.5), x, sample=False)
    scores = user @ item.T / 0.5
    assert torch.allclose(cands.pos, scores.diagonal())
    for row in range(4):
        others = sorted(scores[row, [j for j in range(4) if j != row]].tolist())
        assert sorted(cands.neg[row][cands.valid[row]].tolist()) == pytest.approx(others)
    # the list-wise loss equals a hand-written softmax CE over [diag, others]
    expected = F.cross_entropy(cands.logits(), torch.zeros(4, dtype=torch.long))
    assert ListwiseSoftmax().candidate_loss(cands).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("items", [[0, 1, 2, 3, 4, 5], [0, 1, 0, 2, 1, 0], [3, 3, 3, 3, 3, 3]])
def test_all_in_batch_softmax_equals_the_loss_over_positive_and_valid_negatives(items):
    """The score-matrix loss of all-in-batch candidates against the explicit [positive, negatives]
    softmax: distinct items, repeated items (a repeat of the positive is no negative) and a batch of
    one item (no row has a negative)."""
    torch.manual_seed(0)
    user, item = torch.randn(6, 3, requires_grad=True), torch.randn(6, 3, requires_grad=True)
    x = {"user": torch.arange(6), "item": torch.tensor(items)}
    cands = InBatchNegatives()(_Towers(user, item), x)
    assert isinstance(cands, AllInBatch)
    fast = ListwiseSoftmax().candidate_loss(cands)
    explicit = ListwiseSoftmax().candidate_loss(Candidates(cands.pos, cands.neg, cands.valid))
    assert fast.item() == pytest.approx(explicit.item(), abs=1e-6)
    assert torch.equal(cands.valid, x["item"][:, None] != x["item"][None, :])
    if len(set(items)) > 1:
        grads = torch.autograd.grad(fast, (user, item), retain_graph=True)
        for a, b in zip(grads, torch.autograd.grad(explicit, (user, item))):
            torch.testing.assert_close(a, b)


def test_a_learnable_temperature_gets_its_gradient_even_at_one():
    torch.manual_seed(0)
    towers = _Towers(torch.randn(5, 3), torch.randn(5, 3), temperature=nn.Parameter(torch.ones(1, dtype=torch.float64)))
    x = {"user": torch.arange(5), "item": torch.arange(5)}
    ListwiseSoftmax().candidate_loss(InBatchNegatives()(towers, x)).backward()
    assert towers.temperature.grad is not None and float(towers.temperature.grad.abs()) > 0


def test_all_in_batch_loss_with_an_offset_matches_the_explicit_softmax():
    """A rank's rows against every rank's items (positives at ``offset + i``), items repeating."""
    torch.manual_seed(0)
    user, table = torch.randn(4, 3, requires_grad=True), torch.randn(5, 3, requires_grad=True)
    ids = torch.tensor([2, 0, 1, 2, 0, 3, 2, 4])  # all ranks' items; this rank's positives are ids[4:]
    scores = user @ table[ids].T
    rows = torch.arange(4)
    cands = AllInBatch(scores, scores[rows, rows + 4], torch.unique(ids, return_inverse=True)[1], offset=4)
    explicit = Candidates(cands.pos, cands.neg, cands.valid)
    assert torch.equal(cands.valid, ids[4:, None] != ids[None, :])
    fast, slow = ListwiseSoftmax().candidate_loss(cands), ListwiseSoftmax().candidate_loss(explicit)
    assert fast.item() == pytest.approx(slow.item(), abs=1e-6)
    fast_grads = torch.autograd.grad(fast, (user, table), retain_graph=True)
    for a, b in zip(fast_grads, torch.autograd.grad(slow, (user, table))):
        torch.testing.assert_close(a, b)


def test_all_in_batch_loss_of_a_rank_without_rows_is_zero():
    # under DDP a rank may hold no rows of its own while the gathered items are not empty
    cands = AllInBatch(torch.zeros(0, 4), torch.zeros(0), torch.arange(4), offset=4)
    assert float(ListwiseSoftmax().candidate_loss(cands)) == 0.0


def test_in_batch_never_uses_a_duplicate_of_the_positive_and_samples_ratio():
    user, item = torch.randn(4, 3), torch.randn(3, 3)
    x = {"user": torch.arange(4), "item": torch.tensor([0, 1, 0, 2])}  # rows 0 and 2 share an item
    neg = InBatchNegatives(num_negatives=2, seed=0)
    for _ in range(20):
        cands = neg(_Towers(user, item), x)
        assert cands.neg.shape == (4, 2)
        scores = user @ item[x["item"]].T
        for row in (0, 2):
            dup = scores[row, 2 - row]
            chosen = cands.neg[row][cands.valid[row]]
            assert not torch.isclose(chosen, dup).any()


def test_in_batch_hard_negatives_pick_the_highest_scores():
    user = torch.eye(3)
    item = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0.0, 0, 1]])
    x = {"user": torch.arange(3), "item": torch.arange(3)}
    cands = InBatchNegatives(num_negatives=1, hard=True)(_Towers(user, item), x)
    assert cands.neg[:, 0].tolist() == pytest.approx([0.9, 0.0, 0.0])


def test_in_batch_multi_interest_takes_best_interest_per_item():
    user = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])  # [B=2, K=2, D=2]
    item = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    x = {"user": torch.arange(2), "item": torch.arange(2)}
    cands = InBatchNegatives()(_Towers(user, item), x, sample=False)
    # user 0: item0 via interest 1 -> 2, item1 via interest 0 -> 3; user 1: item0 -> 0, item1 -> 3
    assert cands.pos.tolist() == [2.0, 3.0]
    assert cands.neg[cands.valid].tolist() == [3.0, 0.0]


def test_in_batch_requires_towers():
    with pytest.raises(TypeError, match="lacks"):
        InBatchNegatives.check_model(nn.Linear(2, 2))


def test_match_task_validation_auc_pointwise_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    class Point(nn.Module):
        def forward(self, x):
            return x["s"]

    task = MatchTask(PointwiseBCE())
    s, y = torch.tensor([0.1, 0.4, -0.3, 2.0]), torch.tensor([0.0, 1.0, 1.0, 0.0])
    task.validation_step(Point(), ({"s": s}, y))
    metrics = task.compute_metrics()
    assert metrics["auc"] == pytest.approx(roc_auc_score(y.numpy(), s.numpy()))


def test_masked_candidates_take_no_part_in_row_auc():
    from trainhub.tasks.match import Candidates

    inf = float("-inf")
    assert Candidates.from_output(torch.tensor([[0.0, 1.0, inf]])).row_auc() == (0.0, 1)
    assert Candidates.from_output(torch.tensor([[0.5, 1.0, inf, 0.0]])).row_auc() == (0.5, 1)
def test_duplicate_items_in_a_batch_are_found_exactly_even_on_a_hash_collision(monkeypatch):
    from trainhub.tasks import match

    torch.manual_seed(0)
    item = torch.randn(40, 8)[torch.randint(0, 40, (200,))]
    inverse = torch.unique(item, dim=0, return_inverse=True)[1]
    expected = inverse[None] == inverse[:, None]
    assert torch.equal(match._same_as(match._row_groups(item), 0, 200), expected)
    # every row hashing alike: the check against each group's first row falls back to the exact sort
    monkeypatch.setattr(match, "_ROW_HASH_WEIGHTS", {(8, "cpu"): torch.zeros(8, dtype=torch.long)})
    assert torch.equal(match._same_as(match._row_groups(item), 0, 200), expected)
