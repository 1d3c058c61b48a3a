"""Logged metric keys are made and read back in one place."""

from __future__ import annotations

from trainhub.engine.keys import EPOCH_LOSS, STEP_LOSS, TRAIN, VAL, logged, task_key


def test_logged_prefixes_and_task_key_strips_only_the_validation_prefix():
    assert logged(VAL, {"auc": 0.7}) == {"val/auc": 0.7}
    assert logged(TRAIN, {"loss": 1.0}) == {EPOCH_LOSS: 1.0}
    assert task_key("val/auc") == task_key("auc") == "auc"
    assert task_key(STEP_LOSS) == "train/step_loss"


def test_key_style_is_the_loggers_option():
    from trainhub.engine.keys import LOOP_KEYS, UPSTREAM_KEYS, KeyStyle
    from trainhub.logging import MultiLogger

    loop_keys = {"train/step_loss": 0.5, "train/loss": 0.4, "val/eval_ner_head_f1": 0.7,
                 "train/tokens_per_s": 900.0, "learning_rate": 1e-3, "epoch": 1}
    assert LOOP_KEYS.apply(loop_keys) == loop_keys
    assert UPSTREAM_KEYS.apply(loop_keys) == {"train_loss": 0.5, "train_epoch_loss": 0.4, "eval_ner_head_f1": 0.7,
                                              "train_tokens_per_s": 900.0, "learning_rate": 1e-3, "epoch": 1}

    class Recorder:
        def __init__(self):
            self.seen = []

        def log_metrics(self, metrics, step):
            self.seen.append(metrics)

    plain, styled = Recorder(), Recorder()
    MultiLogger([plain]).log_metrics({"val/auc": 0.8}, step=1)
    MultiLogger([styled], key_style=KeyStyle(val="valid_")).log_metrics({"val/auc": 0.8}, step=1)
    assert plain.seen == [{"val/auc": 0.8}] and styled.seen == [{"valid_auc": 0.8}]
