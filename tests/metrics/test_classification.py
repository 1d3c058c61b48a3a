import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from trainhub.metrics import BinaryAUC, GroupAUC, LogLoss, auc_score, gauc_score, log_loss


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    p[:20] = 0.5  # ties
    return y, p


def test_auc_matches_sklearn(scores):
    y, p = scores
    assert auc_score(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_auc_single_class_is_nan_not_an_exception():
    assert np.isnan(auc_score([1, 1, 1], [0.2, 0.3, 0.4]))


def test_log_loss_matches_sklearn_including_extremes(scores):
    y, p = scores
    p = p.copy()
    p[0], p[1] = 0.0, 1.0
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p, labels=[0, 1]), rel=1e-9)


def test_gauc_skips_single_class_users_and_weights_by_size():
    y = np.array([1, 0, 0, 1, 1, 0, 1, 1, 1])
    p = np.array([0.9, 0.1, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    users = np.array([1, 1, 2, 2, 2, 2, 3, 3, 3])  # user 3 has one class only
    auc1 = roc_auc_score(y[:2], p[:2])
    auc2 = roc_auc_score(y[2:6], p[2:6])
    expected = (2 * auc1 + 4 * auc2) / 6
    assert gauc_score(y, p, users) == pytest.approx(expected)
    assert np.isnan(gauc_score([1, 1], [0.1, 0.2], [5, 5]))


def test_streaming_equals_functional(scores):
    y, p = scores
    auc, ll, gauc = BinaryAUC(), LogLoss(), GroupAUC()
    users = np.arange(len(y)) % 7
    for s in range(0, len(y), 64):
        sl = slice(s, s + 64)
        auc.update(torch.tensor(p[sl]), torch.tensor(y[sl]))
        ll.update(torch.tensor(p[sl]), torch.tensor(y[sl]))
        gauc.update(torch.tensor(p[sl]), torch.tensor(y[sl]), torch.tensor(users[sl]))
    assert auc.compute() == pytest.approx(roc_auc_score(y, p), abs=1e-7)
    assert ll.compute() == pytest.approx(sk_log_loss(y, p), rel=1e-6)
    assert gauc.compute() == pytest.approx(gauc_score(y, p, users), abs=1e-7)
    auc.reset()
    assert np.isnan(auc.compute())
