"""Top-K metrics against hand-computed values and scikit-learn's ndcg_score."""

import math

import numpy as np
import pytest
import torch

from trainhub.metrics import (
    RankingMetrics,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    topk_metrics,
)

Y_TRUE = {"a": [1, 2], "b": [7], "c": [9]}
Y_PRED = {"a": [3, 1, 4, 2], "b": [7, 8], "c": [1, 2, 3]}


def test_hand_computed_values():
    assert recall_at_k(Y_TRUE, Y_PRED, 2) == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert precision_at_k(Y_TRUE, Y_PRED, 2) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert hit_rate_at_k(Y_TRUE, Y_PRED, 2) == pytest.approx(2 / 3)  # users with a hit, not micro-recall
    assert mrr_at_k(Y_TRUE, Y_PRED, 4) == pytest.approx((1 / 2 + 1 + 0) / 3)
    ndcg_a = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(Y_TRUE, Y_PRED, 4) == pytest.approx((ndcg_a + 1 + 0) / 3)


def test_short_lists_and_floats():
    out = topk_metrics(Y_TRUE, Y_PRED, topKs=[5, 10])  # "b" and "c" have fewer than K predictions
    assert set(out) == {f"{m}@{k}" for m in ("recall", "precision", "hit_rate", "ndcg", "mrr") for k in (5, 10)}
    assert all(isinstance(v, float) for v in out.values())
    assert out["recall@10"] == pytest.approx((1 + 1 + 0) / 3)


def test_ndcg_matches_sklearn():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(0)
    n_items, k = 12, 5
    truths, preds, rel_rows, score_rows = [], [], [], []
    for _ in range(6):
        relevant = rng.choice(n_items, size=rng.integers(1, 4), replace=False).tolist()
        scores = rng.random(n_items)
        truths.append(relevant)
        preds.append(np.argsort(-scores).tolist())
        rel = np.zeros(n_items)
        rel[relevant] = 1
        rel_rows.append(rel)
        score_rows.append(scores)
    expected = ndcg_score(np.array(rel_rows), np.array(score_rows), k=k)
    assert ndcg_at_k(truths, preds, k) == pytest.approx(expected)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="positive integer"):
        recall_at_k(Y_TRUE, Y_PRED, 0)
    with pytest.raises(KeyError, match="'c'"):
        recall_at_k(Y_TRUE, {"a": [1], "b": [7]}, 1)


def test_streaming_matches_functions():
    torch.manual_seed(0)
    topk = torch.stack([torch.randperm(20)[:10] for _ in range(30)])
    target = torch.randint(0, 20, (30,))
    metric = RankingMetrics(ks=(1, 5, 10))
    metric.update(topk[:13], target[:13])
    metric.update(topk[13:], target[13:])
    out = metric.compute()
    truth, pred = [[t] for t in target.tolist()], topk.tolist()
    for k in (1, 5, 10):
        assert out[f"recall@{k}"] == pytest.approx(recall_at_k(truth, pred, k))
        assert out[f"hit_rate@{k}"] == pytest.approx(hit_rate_at_k(truth, pred, k))
        assert out[f"precision@{k}"] == pytest.approx(precision_at_k(truth, pred, k))
        assert out[f"ndcg@{k}"] == pytest.approx(ndcg_at_k(truth, pred, k))
        assert out[f"mrr@{k}"] == pytest.approx(mrr_at_k(truth, pred, k))
