"""L1/L2 penalties: embedding tables vs dense weights, norm layers skipped, zero costs nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainhub.tasks.regularization import Regularization, RegularizationLoss, add_penalty


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(3, 2)
        self.fc = nn.Linear(2, 1)
        self.norm = nn.BatchNorm1d(2)
        with torch.no_grad():
            self.emb.weight.fill_(2.0)
            self.fc.weight.fill_(-1.0)
            self.fc.bias.fill_(0.5)


def test_coefficients_apply_to_their_groups_only():
    net = Net()
    emb_l1 = Regularization({"embedding_l1": 0.1})(net)
    assert float(emb_l1.detach()) == pytest.approx(0.1 * 6 * 2.0)
    dense_l2 = Regularization({"dense_l2": 0.5})(net)  # fc weight and bias; BatchNorm is skipped
    assert float(dense_l2.detach()) == pytest.approx(0.5 * (2 * 1.0 + 0.25))


def test_all_zero_is_free_and_unknown_keys_fail():
    assert Regularization()(Net()) == 0.0
    with pytest.raises(ValueError, match="unknown regularization_params"):
        Regularization({"l2": 1.0})


def test_regularization_loss_is_the_same_penalty_and_has_gradients():
    net = Net()
    penalty = RegularizationLoss(embedding_l2=0.1, dense_l1=0.2)(net)
    assert float(penalty.detach()) == pytest.approx(0.1 * 6 * 4.0 + 0.2 * (2 * 1.0 + 0.5))
    penalty.backward()
    assert net.emb.weight.grad is not None and net.norm.weight.grad is None


def test_add_penalty_logs_reg_loss_only_when_there_is_one():
    net, parts = Net(), {}
    loss, penalty = add_penalty(torch.tensor(1.0), net, Regularization({"embedding_l1": 0.1}), parts)
    assert float(loss.detach()) == pytest.approx(1.0 + float(penalty.detach())) and "reg_loss" in parts
    parts = {}
    loss, penalty = add_penalty(torch.tensor(1.0), net, None, parts)
    assert (float(loss), penalty, parts) == (1.0, 0.0, {})
