"""Task heads: shapes, losses against torch oracles, head weights, no-label forward."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from trainhub.text.config import HeadConfig, TaskConfig
from trainhub.text.heads import (
    HEAD_REGISTRY,
    MultiLabelClassificationHeads,
    NERHead,
    RegressionHeads,
    SingleLabelClassificationHeads,
    pool,
)


def _outputs(b=3, t=5, h=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(last_hidden_state=torch.randn(b, t, h, generator=g),
                           pooler_output=torch.randn(b, h, generator=g))


def _task(type_, heads):
    return TaskConfig(name="t", type=type_, data_path="x", heads=[HeadConfig(**h) for h in heads])


def test_pooling_modes():
    out = _outputs()
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert torch.allclose(pool(out, mask, "mean")[0], out.last_hidden_state[0, :2].mean(0))
    assert torch.equal(pool(out, mask, "cls"), out.last_hidden_state[:, 0])
    assert torch.equal(pool(out, mask, "pooler"), out.pooler_output)
    assert torch.equal(pool(SimpleNamespace(last_hidden_state=out.last_hidden_state), mask, "pooler"),
                       out.last_hidden_state[:, 0])


def test_classification_weighted_multi_head_loss():
    task = SingleLabelClassificationHeads(_task("classification", [{"name": "a", "num_labels": 3, "weight": 2.0},
                                                                  {"name": "b", "num_labels": 2}]), 8, dropout=0.0)
    out = _outputs()
    mask = torch.ones(3, 5, dtype=torch.long)
    ya, yb = torch.tensor([0, 2, 1]), torch.tensor([1, 0, 1])
    res = task.get_forward_output(None, mask, None, {"a": ya, "b": yb}, out)
    assert res["logits"]["a"].shape == (3, 3) and res["logits"]["b"].shape == (3, 2)
    expected = 2.0 * F.cross_entropy(res["logits"]["a"], ya) + F.cross_entropy(res["logits"]["b"], yb)
    assert res["loss"].item() == pytest.approx(expected.item())
    assert task.get_forward_output(None, mask, None, None, out)["loss"] == 0


def test_multi_label_bce_and_regression_mse():
    out = _outputs()
    ml = MultiLabelClassificationHeads(_task("multi_label_classification", [{"name": "m", "num_labels": 4}]), 8, 0.0)
    y = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.float)
    res = ml(out, None, {"m": y})
    assert res["loss"].item() == pytest.approx(F.binary_cross_entropy_with_logits(res["logits"]["m"], y).item())
    reg = RegressionHeads(_task("regression", [{"name": "r", "num_labels": 1}]), 8, 0.0)
    target = torch.tensor([[0.5], [1.0], [-2.0]])
    res = reg(out, None, target)  # a bare tensor works for single-head tasks
    assert res["logits"]["r"].shape == (3, 1)
    assert res["loss"].item() == pytest.approx(F.mse_loss(res["logits"]["r"], target).item())


def test_ner_loss_ignores_unlabelled_positions():
    task = NERHead(_task("ner", [{"name": "ner_head", "num_labels": 5}]), 8, 0.0)
    assert isinstance(task.heads["ner_head"], torch.nn.Sequential)
    out = _outputs()
    labels = torch.full((3, 5), -100)
    labels[0, 1], labels[1, 2], labels[2, 3] = 1, 4, 0
    res = task.get_forward_output(None, None, None, labels, out)
    logits = res["logits"]["ner_head"]
    assert logits.shape == (3, 5, 5)
    keep = labels != -100
    assert res["loss"].item() == pytest.approx(F.cross_entropy(logits[keep], labels[keep]).item(), rel=1e-5)
    all_ignored = task.get_forward_output(None, None, None, torch.full((3, 5), -100), out)["loss"]
    assert all_ignored.item() == 0.0 and torch.isfinite(all_ignored)


def test_registry_and_errors():
    assert HEAD_REGISTRY["classification"] is HEAD_REGISTRY["single_label_classification"]
    with pytest.raises(ValueError, match="no num_labels"):
        NERHead(_task("ner", [{"name": "ner_head"}]), 8)
    task = SingleLabelClassificationHeads(_task("classification", [{"name": "a", "num_labels": 2},
                                                                  {"name": "b", "num_labels": 2}]), 8)
    with pytest.raises(ValueError, match=r"pass labels as \{head: tensor\}"):
        task(_outputs(), None, torch.tensor([0, 1, 0]))
