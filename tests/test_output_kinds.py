"""Output kinds: one decision per column type for loss, prediction, metric, label check and scale."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainhub.metrics import BinaryAUC, MeanSquaredError
from trainhub.output_kinds import OUTPUT_KINDS, Classification, Regression, check_binary_labels, output_kinds


def test_task_types_map_to_kinds_and_bad_entries_are_named():
    assert [type(k) for k in output_kinds(["classification", "regression"])] == [Classification, Regression]
    with pytest.raises(ValueError, match=r"task_types\[1\] is 'binary'"):
        output_kinds(["regression", "binary"])
    with pytest.raises(ValueError, match="task_types is empty"):
        output_kinds([])


def test_each_kind_owns_its_loss_prediction_and_metric():
    out, y = torch.tensor([0.5, -1.0]), torch.tensor([1.0, 0.0])
    cls, reg = OUTPUT_KINDS["classification"], OUTPUT_KINDS["regression"]
    assert torch.allclose(cls.loss(out, y), F.binary_cross_entropy_with_logits(out, y))
    assert torch.allclose(reg.loss(out, y), F.mse_loss(out, y))
    assert torch.allclose(cls.predict(out), torch.sigmoid(out)) and torch.equal(reg.predict(out), out)
    assert isinstance(cls.new_metric(), BinaryAUC) and isinstance(reg.new_metric(), MeanSquaredError)
    assert (cls.metric, reg.metric) == ("auc", "mse")
    assert (cls.new_metric().higher_is_better, reg.new_metric().higher_is_better) == (True, False)
    assert (cls.uncertainty_scale, reg.uncertainty_scale) == (1.0, 0.5)


def test_labels_are_checked_by_kind():
    with pytest.raises(ValueError, match="ctr is a classification task, so its labels must be 0 or 1; found 3"):
        OUTPUT_KINDS["classification"].check_labels(torch.tensor([0.0, 3.0]), "ctr")
    OUTPUT_KINDS["regression"].check_labels(torch.tensor([0.0, 3.0]), "price")  # any value is a target
    assert torch.equal(check_binary_labels(torch.tensor([[1], [0]])), torch.tensor([1.0, 0.0]))
