import math

import pytest

from trainhub.engine import EarlyStopping


def run(stopper, values):
    stopped_at = None
    for epoch, v in enumerate(values):
        stopper.update({"m": v}, epoch)
        if stopper.should_stop:
            stopped_at = epoch
            break
    return stopped_at


def test_patience_counts_like_torch_rechub():
    # patience=2 and best at epoch 0 -> stop after epoch 2
    s = EarlyStopping("m", "max", patience=2)
    assert run(s, [0.9, 0.8, 0.85, 0.95]) == 2
    assert s.best == 0.9 and s.best_step == 0


def test_min_mode_for_losses():
    s = EarlyStopping("m", "min", patience=2)
    assert run(s, [1.0, 0.5, 0.6, 0.4, 0.45, 0.41]) == 5
    assert s.best == 0.4 and s.best_step == 3


def test_min_delta_and_nan():
    s = EarlyStopping("m", "max", patience=3, min_delta=0.05)
    assert s.update({"m": 0.5}, 0)
    assert not s.update({"m": 0.52}, 1)  # below min_delta
    assert not s.update({"m": math.nan}, 2)
    assert s.update({"m": 0.6}, 3)


def test_missing_metric_and_bad_mode_are_errors():
    with pytest.raises(KeyError, match="'auc'"):
        EarlyStopping("auc").update({"loss": 1.0}, 0)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping("auc", mode="up")


def test_state_round_trip():
    s = EarlyStopping("m", "max", patience=3)
    run(s, [0.1, 0.3, 0.2])
    t = EarlyStopping("m", "max", patience=3)
    t.load_state_dict(s.state_dict())
    assert (t.best, t.best_step, t.bad_evals) == (0.3, 1, 1)


class _Declares:
    def higher_is_better(self, name):
        return {"auc": True, "logloss": False}.get(name)


def test_direction_comes_from_the_task_that_defines_the_metric():
    from trainhub.engine.stopping import monitor_mode

    task = _Declares()
    assert monitor_mode(task, "val/logloss") == "min"
    assert monitor_mode(task, "auc") == "max"
    assert monitor_mode(task, "recall_at_10") == "max"  # unknown to the task: the default
    assert monitor_mode(object(), "logloss", default="min") == "min"
    s = EarlyStopping("logloss", mode=None, patience=1)
    s.follow(task)
    assert s.mode == "min"
    assert s.update({"logloss": 0.5}, 0) and s.update({"logloss": 0.4}, 1) and not s.update({"logloss": 0.6}, 2)
