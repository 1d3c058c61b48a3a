"""Multi-task batch schedules."""

from __future__ import annotations

from collections import Counter

import pytest

from trainhub.text.sampling import MultiTaskLoader, SequentialTaskLoader


def _loaders():
    return {"a": [f"a{i}" for i in range(3)], "b": ["b0"], "c": [f"c{i}" for i in range(2)]}


def test_round_robin_order_and_exhaustion():
    order = list(MultiTaskLoader(_loaders()))
    assert order == [("a", "a0"), ("b", "b0"), ("c", "c0"), ("a", "a1"), ("c", "c1"), ("a", "a2")]
    loader = MultiTaskLoader(_loaders())
    assert len(loader) == 6 and list(loader) == order  # the same every epoch


def test_proportional_sees_every_batch_once_in_a_seeded_order():
    loader = MultiTaskLoader(_loaders(), "proportional", seed=1)
    first, second = list(loader), list(loader)
    assert sorted(first) == sorted(list(MultiTaskLoader(_loaders())))
    for name in "abc":  # each task's own batches stay in loader order
        assert [b for n, b in first if n == name] == _loaders()[name]
    assert first != second or first != list(MultiTaskLoader(_loaders()))
    assert list(MultiTaskLoader(_loaders(), "proportional", seed=1)) == first


def test_temperature_upsamples_small_tasks():
    loaders = {"big": list(range(90)), "small": list(range(10))}
    loader = MultiTaskLoader(loaders, "temperature", temperature=1e6, seed=0)
    probs = loader.task_probabilities()
    assert probs["big"] == pytest.approx(0.5, abs=1e-4)
    counts = Counter(name for name, _ in loader)
    assert sum(counts.values()) == 100 and counts["small"] > 30  # restarted when exhausted
    assert MultiTaskLoader(loaders, "temperature", temperature=1.0).task_probabilities()["big"] == pytest.approx(0.9)


def test_empty_loaders_are_dropped_and_bad_strategy():
    assert list(MultiTaskLoader({"a": [], "b": [1]})) == [("b", 1)]
    with pytest.raises(ValueError, match="unknown task_sampling"):
        MultiTaskLoader({"a": [1]}, "random")
    assert list(SequentialTaskLoader({"a": [1, 2], "b": [3]})) == [("a", 1), ("a", 2), ("b", 3)]
