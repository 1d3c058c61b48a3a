"""Logged metric keys are made and read back in one place."""

from __future__ import annotations

from trainhub.engine.keys import EPOCH_LOSS, STEP_LOSS, TRAIN, VAL, logged, task_key


def test_logged_prefixes_and_task_key_strips_only_the_validation_prefix():
    assert logged(VAL, {"auc": 0.7}) == {"val/auc": 0.7}
    assert logged(TRAIN, {"loss": 1.0}) == {EPOCH_LOSS: 1.0}
    assert task_key("val/auc") == task_key("auc") == "auc"
    assert task_key(STEP_LOSS) == "train/step_loss"
