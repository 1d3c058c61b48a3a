"""The text objective: (task, batch) pairs in, per-task training losses, merged validation state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainhub.engine.task import DirectedMetrics, EpochLogs, NamedMetrics, SyncedMetrics
from trainhub.text.config import HeadConfig, TaskConfig
from trainhub.text.objective import MultiTaskObjective

TASK = TaskConfig(name="S", type="single_label_classification", data_path="x",
                  heads=[HeadConfig(name="h", labels=["neg", "pos"], num_labels=2)])
LOGITS = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])


def model(input_ids, attention_mask, task_id, labels, token_type_ids):
    rows = LOGITS[input_ids[:, 0]]  # the first token id picks the row's logits
    loss = F.cross_entropy(rows, labels["h"]) if labels is not None else rows.sum() * 0
    return {"loss": loss, "logits": {"h": rows}}


def _batch(labels, first_row=0, real_tokens=None):
    n = len(labels)
    ids = torch.arange(first_row, first_row + n).unsqueeze(1).expand(n, 4)
    mask = torch.ones(n, 4, dtype=torch.long)
    if real_tokens is not None:
        mask[:, real_tokens:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": {"h": torch.tensor(labels)}}


def test_it_implements_the_engine_protocols():
    objective = MultiTaskObjective([TASK])
    for protocol in (EpochLogs, NamedMetrics, DirectedMetrics, SyncedMetrics):
        assert isinstance(objective, protocol)


def test_training_logs_per_task_loss_and_padding_then_resets():
    objective = MultiTaskObjective([TASK])
    out = objective.training_step(model, ("S", _batch([0, 1], real_tokens=3)))
    assert out.batch_size == 2
    logs = objective.epoch_logs()
    assert logs["train_S_loss"] == pytest.approx(float(out.loss))
    assert logs["train_padding"] == pytest.approx(0.25) and logs["train_tokens_per_s"] > 0
    assert objective.epoch_logs() == {}


def test_batches_must_name_their_task():
    objective = MultiTaskObjective([TASK])
    with pytest.raises(TypeError, match=r"\(task_name, batch\) pairs"):
        objective.training_step(model, _batch([0]))
    with pytest.raises(KeyError, match="unknown task 'Other'"):
        objective.training_step(model, ("Other", _batch([0])))


def test_synced_state_equals_one_process_seeing_every_row():
    whole = MultiTaskObjective([TASK])
    whole.validation_step(model, ("S", _batch([0, 1, 1, 1])))
    expected = whole.compute_metrics()
    ranks = [MultiTaskObjective([TASK]), MultiTaskObjective([TASK])]
    ranks[0].validation_step(model, ("S", _batch([0, 1])))
    ranks[1].validation_step(model, ("S", _batch([1, 1], first_row=2)))
    states = [(r._loss, r._preds, r._golds) for r in ranks]
    ranks[0].sync_metrics(lambda obj: states)
    merged = ranks[0].compute_metrics()
    assert merged == pytest.approx(expected)
    assert expected["eval_S_h_accuracy"] == 0.75
