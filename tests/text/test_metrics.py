"""Metrics against scikit-learn / seqeval and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from seqeval.metrics import f1_score as seq_f1
from sklearn.metrics import f1_score, precision_score

from trainhub.text.metrics import (
    compute_classification_metrics,
    compute_multi_label_metrics,
    compute_ner_metrics,
    compute_regression_metrics,
)


def test_classification_matches_sklearn():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 3))
    gold = rng.integers(0, 3, 50)
    pred = logits.argmax(1)
    m = compute_classification_metrics(logits, gold)
    assert m["accuracy"] == pytest.approx((pred == gold).mean())
    assert m["f1"] == pytest.approx(f1_score(gold, pred, average="weighted"))
    assert m["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"))
    assert m["precision"] == pytest.approx(precision_score(gold, pred, average="weighted", zero_division=0))


def test_multi_label_thresholds_probabilities_not_logits():
    logits = np.array([[0.2, -3.0], [-0.2, 2.0]])  # sigmoid: [0.55, 0.05], [0.45, 0.88]
    gold = np.array([[1, 0], [0, 1]])
    m = compute_multi_label_metrics(logits, gold, threshold=0.5)
    assert m["accuracy"] == 1.0 and m["f1"] == 1.0  # thresholding raw logits at 0.5 would miss row 0
    m = compute_multi_label_metrics(logits, gold, threshold=0.6)
    # predicted only [1, 1]; micro P = 1/1, R = 1/2
    assert m["precision"] == 1.0 and m["recall"] == 0.5 and m["accuracy"] == 0.5


def test_ner_entity_level_with_seqeval_oracle():
    label_map = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
    # Sequences with -100 at sub-token/special positions and different lengths.
    gold = [np.array([-100, 1, 2, 0, 3, -100]), np.array([-100, 3, 4, -100])]
    pred = [np.array([0, 1, 0, 0, 3, 0]), np.array([2, 3, 4, 1])]
    m = compute_ner_metrics(pred, gold, label_map)
    # gold entities: PER(0-1), LOC(3), LOC(0-1); predicted: PER(0) (wrong extent), LOC(3), LOC(0-1)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    y_true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "I-LOC"]]
    y_pred = [["B-PER", "O", "O", "B-LOC"], ["B-LOC", "I-LOC"]]
    assert m["f1"] == pytest.approx(seq_f1(y_true, y_pred))
    assert m["accuracy"] == pytest.approx(5 / 6)  # token accuracy over labelled positions
    # logits [T, C] are argmaxed
    onehot = [np.eye(5)[np.where(p < 0, 0, p)] for p in pred]
    assert compute_ner_metrics(onehot, gold, label_map)["f1"] == pytest.approx(m["f1"])


def test_regression_errors():
    m = compute_regression_metrics(np.array([[1.0], [3.0]]), np.array([2.0, 3.0]))
    assert m == pytest.approx({"mse": 0.5, "rmse": 0.5 ** 0.5, "mae": 0.5})


def test_empty_inputs_give_no_metrics():
    assert compute_classification_metrics(np.zeros((0, 2)), np.zeros(0)) == {}
    assert compute_ner_metrics([np.array([0])], [np.array([-100])], {0: "O"}) == {}
