"""CTRTask: BCE-with-logits against torch, loss_mode's two output adapters, label checks, metrics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import log_loss, roc_auc_score
from torch import nn

from trainhub.tasks.ctr import CTRTask, LogitsOnly, LogitsWithAuxLoss, check_binary_labels, split_batch


class Fixed(nn.Module):
    """Returns the logits (and aux loss) it was given, whatever the input."""

    def __init__(self, logits, aux=None):
        super().__init__()
        self.logits, self.aux = logits, aux
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        out = self.logits * self.w
        return out if self.aux is None else (out, self.aux * self.w)


LOGITS = torch.tensor([2.0, -1.0, 0.5, -3.0])
LABELS = torch.tensor([1.0, 0.0, 0.0, 1.0])


def test_training_loss_is_bce_with_logits():
    out = CTRTask().training_step(Fixed(LOGITS), ({"x": LABELS}, LABELS))
    assert torch.allclose(out.loss, F.binary_cross_entropy_with_logits(LOGITS, LABELS))
    assert out.batch_size == 4 and out.parts == {}


def test_loss_mode_false_adds_and_logs_the_aux_loss():
    out = CTRTask(loss_mode=False).training_step(Fixed(LOGITS, torch.tensor(0.25)), ({"x": LABELS}, LABELS))
    assert torch.allclose(out.loss, F.binary_cross_entropy_with_logits(LOGITS, LABELS) + 0.25)
    assert float(out.parts["aux_loss"].detach()) == pytest.approx(0.25)


def test_each_adapter_names_the_other_mode_when_the_output_does_not_fit():
    assert isinstance(CTRTask(loss_mode=True).output, LogitsOnly)
    assert isinstance(CTRTask(loss_mode=False).output, LogitsWithAuxLoss)
    with pytest.raises(TypeError, match="pass loss_mode=False"):
        LogitsOnly()((LOGITS, 0.0))
    with pytest.raises(TypeError, match="loss_mode=False expects"):
        LogitsWithAuxLoss()(LOGITS)


def test_validation_metrics_match_sklearn_and_reset():
    task = CTRTask()
    task.validation_step(Fixed(LOGITS), ({"x": LABELS}, LABELS))
    metrics = task.compute_metrics()
    probs = torch.sigmoid(LOGITS).numpy()
    assert metrics["auc"] == pytest.approx(roc_auc_score(LABELS.numpy(), probs))
    assert metrics["logloss"] == pytest.approx(log_loss(LABELS.numpy(), probs))
    assert task.metric_names() == list(metrics)
    assert (task.higher_is_better("auc"), task.higher_is_better("logloss"), task.higher_is_better("x")) == \
        (True, False, None)


def test_labels_must_be_binary_and_batches_need_labels():
    with pytest.raises(ValueError, match="found 2 at row 1"):
        check_binary_labels(torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match="no labels"):
        CTRTask().training_step(Fixed(LOGITS), {"x": LABELS})


def test_predict_returns_probabilities_for_x_or_x_y_batches():
    task = CTRTask()
    assert torch.allclose(task.predict_step(Fixed(LOGITS), {"x": LABELS}), torch.sigmoid(LOGITS))
    assert split_batch(({"x": 1}, 2)) == ({"x": 1}, 2)
