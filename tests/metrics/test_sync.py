"""Streaming metrics merged across "ranks" with sync(gather) equal one metric over all rows."""

import numpy as np
import pytest
import torch

from trainhub.metrics import BinaryAUC, GroupAUC, LogLoss, MeanSquaredError, RankingMetrics


def _sync_all(parts):
    """Simulate ``sync`` on each of several ranks with an all-gather over their states."""
    states = []
    for m in parts:  # first pass: collect each rank's state (gather of one returns itself)
        m.sync(lambda obj: states.append(obj) or [obj])
    for m in parts:
        m.sync(lambda obj: list(states))


@pytest.mark.parametrize("make", [BinaryAUC, LogLoss, MeanSquaredError, GroupAUC])
def test_sync_merges_every_rank(make):
    rng = np.random.default_rng(0)
    scores = torch.tensor(rng.random(50), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 2, 50), dtype=torch.float32)
    groups = torch.tensor(rng.integers(0, 5, 50))
    args = (scores, labels, groups) if make is GroupAUC else (scores, labels)
    whole = make()
    whole.update(*args)
    parts = [make() for _ in range(3)]
    for m, idx in zip(parts, np.array_split(np.arange(50), 3)):
        m.update(*(a[idx] for a in args))
    _sync_all(parts)
    for m in parts:
        assert m.compute() == pytest.approx(whole.compute(), abs=1e-12)


def test_ranking_metrics_sync():
    topk = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 5, 9]])
    target = torch.tensor([2, 9, 7, 5])
    whole, parts = RankingMetrics((1, 3)), [RankingMetrics((1, 3)) for _ in range(2)]
    whole.update(topk, target)
    parts[0].update(topk[:1], target[:1])
    parts[1].update(topk[1:], target[1:])
    _sync_all(parts)
    assert parts[0].compute() == parts[1].compute() == pytest.approx(whole.compute())


def test_dist_timeout_from_environment(monkeypatch):
    from trainhub.engine.runtime import dist_timeout

    monkeypatch.setenv("TRAINHUB_DIST_TIMEOUT", "90")
    assert dist_timeout().total_seconds() == 90
    monkeypatch.setenv("TRAINHUB_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="TRAINHUB_DIST_TIMEOUT"):
        dist_timeout()
