"""MTLTask: per-task losses, declared supervised outputs, metrics against scikit-learn."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import mean_squared_error, roc_auc_score
from torch import nn

from trainhub.engine import evaluate
from trainhub.tasks import MTLTask, UncertaintyWeighting


class Fixed(nn.Module):
    """Returns the batch's ``out`` column as its output (plus 0 * w so there is a parameter)."""

    def __init__(self, supervised=None):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        if supervised is not None:
            self.supervised_outputs = supervised

    def forward(self, x):
        return x["out"] + 0 * self.w


def batch(out, y):
    return {"out": torch.tensor(out, dtype=torch.float32)}, torch.tensor(y, dtype=torch.float32)


def test_losses_are_bce_with_logits_and_mse_and_equal_weights_average():
    task = MTLTask(["classification", "regression"]).bind(Fixed())
    out = [[0.3, 1.0], [-2.0, 0.5], [1.5, -1.0]]
    y = [[1, 0.5], [0, 2.0], [0, -1.0]]
    step = task.training_step(Fixed(), batch(out, y))
    o, t = torch.tensor(out), torch.tensor(y)
    bce = F.binary_cross_entropy_with_logits(o[:, 0], t[:, 0])
    mse = ((o[:, 1] - t[:, 1]) ** 2).mean()
    assert torch.allclose(step.task_losses, torch.stack([bce, mse]))
    assert float(step.loss.detach()) == pytest.approx(float((bce + mse) / 2), rel=1e-6)
    assert set(step.parts) == {"task_0_loss", "task_1_loss"} and step.batch_size == 3


def test_declared_supervised_outputs_are_the_only_trained_columns():
    # Any model may declare it (ESMM does); the task never checks the class.
    model = Fixed(supervised=(1, 2))
    task = MTLTask(["classification"] * 3, weighting=UncertaintyWeighting()).bind(model)
    assert task.supervised == [1, 2] and task.weighting.names == ["task_1", "task_2"]
    out = [[5.0, 0.1, -0.2], [-5.0, 0.3, 0.4]]
    y = [[0, 1, 0], [1, 0, 1]]
    step = task.training_step(model, batch(out, y))
    assert step.task_losses.shape == (2,)
    o, t = torch.tensor(out), torch.tensor(y, dtype=torch.float32)
    expected = F.binary_cross_entropy_with_logits(o[:, 0], t[:, 0])
    assert float(step.parts["task_0_loss"]) == pytest.approx(float(expected))
    assert not step.parts["task_0_loss"].requires_grad  # logged, not trained
    with pytest.raises(ValueError, match="does not fit 3 tasks"):
        MTLTask(["classification"] * 3).bind(Fixed(supervised=(0, 3)))


def test_metrics_match_sklearn_and_predict_applies_sigmoid_to_classification_only():
    rng = np.random.default_rng(0)
    out = rng.normal(size=(40, 2)).astype(np.float32)
    y = np.stack([rng.integers(0, 2, 40), rng.normal(size=40)], 1).astype(np.float32)
    task = MTLTask(["classification", "regression"]).bind(Fixed())
    loader = [batch(out[i:i + 16], y[i:i + 16]) for i in range(0, 40, 16)]
    metrics = evaluate(Fixed(), task, loader, progress=False)
    assert metrics["task_0_auc"] == pytest.approx(roc_auc_score(y[:, 0], out[:, 0]))
    assert metrics["task_1_mse"] == pytest.approx(mean_squared_error(y[:, 1], out[:, 1]), rel=1e-6)
    pred = task.predict_step(Fixed(), loader[0][0])  # x only
    assert torch.allclose(pred[:, 0], torch.sigmoid(torch.tensor(out[:16, 0])))
    assert torch.allclose(pred[:, 1], torch.tensor(out[:16, 1]))


def test_bad_labels_and_shapes_are_named():
    task = MTLTask(["classification", "regression"]).bind(Fixed())
    with pytest.raises(ValueError, match="task_0 is a classification task.*found 2 at row 1"):
        task.training_step(Fixed(), batch([[0.0, 0.0], [0.0, 0.0]], [[1, 0.3], [2, 0.1]]))
    with pytest.raises(ValueError, match=r"labels have shape \(2,\)"):
        task.training_step(Fixed(), batch([[0.0, 0.0], [0.0, 0.0]], [1, 0]))
    with pytest.raises(ValueError, match=r"model returned \(2, 3\) outputs for 2 task_types"):
        task.training_step(Fixed(), batch([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]], [[1, 0.3], [0, 0.1]]))
    with pytest.raises(ValueError, match="task_types\\[0\\]"):
        MTLTask(["binary"])


def test_dict_outputs_are_read_in_order():
    class DictModel(Fixed):
        def forward(self, x):
            return {"ctr": x["out"][:, 0], "price": x["out"][:, 1]}

    task = MTLTask(["classification", "regression"]).bind(DictModel())
    step = task.training_step(DictModel(), batch([[0.0, 1.0]], [[1, 1.0]]))
    assert float(step.parts["task_1_loss"].detach()) == 0.0


class Linear2(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x["f"])

    def shared_parameters(self):
        return list(self.fc.parameters())

    def last_shared_parameters(self):
        return [self.fc.weight]


def test_equal_and_uwl_use_the_loop_backward_so_gradient_accumulation_applies():
    from trainhub.engine import FitConfig, train_epoch
    from trainhub.tasks import GradNorm

    g = torch.Generator().manual_seed(1)
    f = torch.randn(32, 3, generator=g)
    y = torch.stack([(f[:, 0] > 0).float(), f[:, 1]], 1)
    whole = [({"f": f}, y)]
    parts = [({"f": f[i:i + 8]}, y[i:i + 8]) for i in range(0, 32, 8)]
    for weighting in (None, UncertaintyWeighting()):
        weights = []
        for loader, accum in ((whole, 1), (parts, 4)):
            model = Linear2()
            task = MTLTask(["classification", "regression"], weighting=weighting).bind(model)
            assert task.backward is None
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            train_epoch(model, task, opt, loader, config=FitConfig(grad_accum_steps=accum, progress=False))
            weights.append(model.fc.weight.detach().clone())
        assert torch.allclose(weights[0], weights[1], atol=1e-6)
    model = Linear2()
    task = MTLTask(["classification", "regression"], weighting=GradNorm()).bind(model)
    assert task.backward is not None
    with pytest.raises(ValueError, match="grad_accum_steps > 1 cannot be combined"):
        train_epoch(model, task, torch.optim.SGD(model.parameters(), lr=0.1), parts,
                    config=FitConfig(grad_accum_steps=4, progress=False))
