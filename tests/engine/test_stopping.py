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
