"""Loss-weighting strategies checked against hand-computed examples."""

import math

import pytest
import torch
from torch import nn

from trainhub.tasks.weighting import (
    EqualWeighting,
    GradNorm,
    MetaBalance,
    UncertaintyWeighting,
    build_weighting,
)


class Toy(nn.Module):
    """Shared ``emb`` (first layer) and ``theta`` (last shared layer), one head per task."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Parameter(torch.tensor([1.0]))
        self.theta = nn.Parameter(torch.tensor([1.0, 1.0]))
        self.heads = nn.Parameter(torch.tensor([0.0, 0.0]))
        self.spare = nn.Parameter(torch.zeros(1))  # used by no loss

    def shared_parameters(self):
        return [self.emb, self.theta]

    def last_shared_parameters(self):
        return [self.theta]

    def losses(self, c0=1.0, c1=1.0):
        """L0 = c0 (3 t0 + 4 t1) + 10 emb + h0;  L1 = c1 (0.6 t0 + 0.8 t1) + 10 emb + 2 h1."""
        t, e, h = self.theta, self.emb[0], self.heads
        return torch.stack([c0 * (3 * t[0] + 4 * t[1]) + 10 * e + h[0],
                            c1 * (0.6 * t[0] + 0.8 * t[1]) + 10 * e + 2 * h[1]])


def step(weighting, model, **coefs):
    model.zero_grad(set_to_none=True)
    losses = model.losses(**coefs)
    loss = weighting.combine(losses)
    weighting.backward(losses, loss)
    return loss


def test_equal_weighting_is_the_mean():
    w = EqualWeighting()
    w.setup(Toy(), ["classification"] * 2, ["a", "b"])
    assert float(w.combine(torch.tensor([2.0, 3.0]))) == pytest.approx(2.5)
    assert w.epoch_logs() == {} and w.optimized_parameters() == []


def test_uwl_objective_and_gradients_match_kendall_forms():
    w = UncertaintyWeighting()
    w.setup(Toy(), ["classification", "regression"], ["cls", "reg"])
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.5, -1.0]))
    losses = torch.tensor([2.0, 3.0], requires_grad=True)
    total = w.combine(losses)
    # classification: exp(-s) L + s/2; regression: exp(-s) L / 2 + s/2
    expected = math.exp(-0.5) * 2 + 0.25 + 0.5 * math.exp(1.0) * 3 - 0.5
    assert float(total.detach()) == pytest.approx(expected, rel=1e-6)
    total.backward()
    assert w.log_vars.grad.tolist() == pytest.approx([-2 * math.exp(-0.5) + 0.5, -1.5 * math.e + 0.5], rel=1e-6)
    assert losses.grad.tolist() == pytest.approx([math.exp(-0.5), 0.5 * math.e], rel=1e-6)
    assert w.optimized_parameters() == [w.log_vars]
    logs = w.epoch_logs()
    assert logs["loss_weight/cls"] == pytest.approx(math.exp(-0.5)) and logs["log_var/reg"] == pytest.approx(-1.0)


def test_uwl_log_variance_is_not_clamped_at_zero():
    # Torch-RecHub clamps s at 0, freezing it once negative; here a small loss drives s below 0.
    w = UncertaintyWeighting()
    w.setup(Toy(), ["regression"], ["r"])
    opt = torch.optim.SGD([w.log_vars], lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        w.combine(torch.tensor([0.1])).backward()
        opt.step()
    # optimum of 0.5 e^-s L + 0.5 s is s = log L
    assert float(w.log_vars.detach()) == pytest.approx(math.log(0.1), abs=0.05)


def test_metabalance_scales_auxiliary_gradients_on_shared_parameters_only():
    model = Toy()
    mb = MetaBalance(relax_factor=0.7, beta=0.9)
    mb.setup(model, ["classification"] * 2, ["main", "aux"])
    loss = step(mb, model)
    assert float(loss.detach()) == pytest.approx(float(model.losses().sum().detach()))
    # theta: |g0| = 5, |g1| = 1; m0 = 0.5, m1 = 0.1; scale = 0.7 * 5 + 0.3 = 3.8
    assert model.theta.grad.tolist() == pytest.approx([3 + 3.8 * 0.6, 4 + 3.8 * 0.8], rel=1e-5)
    # emb: both tasks have |g| = 10, so the scale is 1 and the gradient is the plain sum
    assert model.emb.grad.tolist() == pytest.approx([20.0], rel=1e-5)
    # task-specific heads: plain per-task gradients
    assert model.heads.grad.tolist() == pytest.approx([1.0, 2.0])
    assert model.spare.grad is None  # reached by no loss: left for the optimizer to skip, like backward()
    # second step, aux gradient doubled: m0 = 0.9*0.5 + 0.1*5 = 0.95, m1 = 0.9*0.1 + 0.1*2 = 0.29
    step(mb, model, c1=2.0)
    scale = 0.7 * 0.95 / 0.29 + 0.3
    assert model.theta.grad.tolist() == pytest.approx([3 + scale * 1.2, 4 + scale * 1.6], rel=1e-5)
    assert mb.epoch_logs()["metabalance_scale/main"] == 1.0


def test_metabalance_without_relaxation_is_the_plain_sum_and_adds_regularisation():
    model = Toy()
    mb = MetaBalance(relax_factor=0.0)
    mb.setup(model, ["classification"] * 2, ["a", "b"])
    losses = model.losses()
    reg = 0.5 * model.theta.sum()
    mb.backward(losses, mb.combine(losses) + reg, reg)
    assert model.theta.grad.tolist() == pytest.approx([3 + 0.6 + 0.5, 4 + 0.8 + 0.5], rel=1e-6)


def test_gradnorm_per_task_targets_and_renormalisation_on_the_last_shared_layer():
    model = Toy()
    gn = GradNorm(alpha=0.16, lr=0.1, optimizer_fn=torch.optim.SGD)
    gn.setup(model, ["classification"] * 2, ["a", "b"])
    # norms on theta: |dL0/dtheta| = 5, |dL1/dtheta| = 1 (emb is shared but not the last layer).
    step(gn, model)
    # network gradient uses the weights before the update (1, 1)
    assert model.theta.grad.tolist() == pytest.approx([3.6, 4.8], rel=1e-6)
    # r = (1, 1) on the first step; G = (5, 1), G_bar = 3, targets (3, 3): dw = (+5, -1)
    # SGD: w = (1 - 0.5, 1 + 0.1) = (0.5, 1.1); renormalised to sum 2: * 2 / 1.6
    assert gn.loss_weights.tolist() == pytest.approx([0.625, 1.375], rel=1e-6)
    assert float(gn.loss_weights.detach().sum()) == pytest.approx(2.0)

    # Step 2: L0 halves relative to its start, L1 does not.
    model2 = Toy()
    gn.shared = model2.last_shared_parameters()
    step(gn, model2, c0=0.5)
    l0_ratio = (0.5 * 7 + 10) / (7 + 10)  # L0(t) / L0(0) (emb = 1 adds 10 to each loss)
    l1_ratio = (0.6 + 0.8 + 10) / (0.6 + 0.8 + 10)
    r = [l0_ratio / ((l0_ratio + l1_ratio) / 2), l1_ratio / ((l0_ratio + l1_ratio) / 2)]
    norms = [2.5, 1.0]
    g = [0.625 * norms[0], 1.375 * norms[1]]
    g_bar = sum(g) / 2
    targets = [g_bar * r[0] ** 0.16, g_bar * r[1] ** 0.16]
    dw = [math.copysign(n, gi - ti) for n, gi, ti in zip(norms, g, targets)]
    w = [0.625 - 0.1 * dw[0], 1.375 - 0.1 * dw[1]]
    w = [2 * v / sum(w) for v in w]
    assert gn.loss_weights.tolist() == pytest.approx(w, rel=1e-5)
    assert model2.theta.grad.tolist() == pytest.approx([0.625 * 1.5 + 1.375 * 0.6, 0.625 * 2 + 1.375 * 0.8], rel=1e-6)
    assert gn.epoch_logs()["loss_weight/a"] == pytest.approx(w[0], rel=1e-5)


def test_gradnorm_targets_differ_per_task():
    # The paper's per-task targets G_bar * r_i^alpha, not one common target (Torch-RecHub's bug).
    model = Toy()
    gn = GradNorm(alpha=3.0, lr=0.0, optimizer_fn=torch.optim.SGD)
    gn.setup(model, ["classification"] * 2, ["a", "b"])
    step(gn, model)
    step(gn, model, c0=0.1)  # L0 = 10.7 vs 17 at the start: task 0 trains faster, so r_0 < r_1
    g = gn.last_grad_norms
    assert g.tolist() == pytest.approx([0.5, 1.0])  # w stays (1, 1) with lr 0
    l0, l1 = 10.7 / 17, 1.0
    r = [l0 / ((l0 + l1) / 2), l1 / ((l0 + l1) / 2)]
    assert gn.last_targets.tolist() == pytest.approx([0.75 * r[0] ** 3, 0.75 * r[1] ** 3], rel=1e-5)


def test_gradnorm_state_round_trips_with_optimizer_state():
    model = Toy()
    gn = GradNorm(lr=0.01)
    gn.setup(model, ["classification"] * 2, ["a", "b"])
    step(gn, model)
    state = gn.state_dict()
    other = GradNorm(lr=0.01)
    other.setup(Toy(), ["classification"] * 2, ["a", "b"])
    other.load_state_dict(state)
    assert torch.equal(other.loss_weights, gn.loss_weights) and bool(other.started)
    assert other.weight_optimizer.state_dict()["state"][0]["step"] == 1


def test_strategies_need_declared_shared_parameters():
    bare = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="shared_parameters"):
        MetaBalance().setup(bare, ["classification"], ["a"])
    with pytest.raises(TypeError, match="last_shared_parameters"):
        GradNorm().setup(bare, ["classification"], ["a"])


def test_build_weighting_maps_adaptive_params():
    assert isinstance(build_weighting(None), EqualWeighting)
    assert isinstance(build_weighting({"method": "uwl"}), UncertaintyWeighting)
    mb = build_weighting({"method": "metabalance"})
    assert isinstance(mb, MetaBalance) and (mb.relax_factor, mb.beta) == (0.7, 0.9)
    gn = build_weighting({"method": "gradnorm"}, default_lr=0.01)
    assert isinstance(gn, GradNorm) and gn.alpha == 0.16 and gn.lr == 0.01
    assert build_weighting({"method": "GradNorm", "alpha": 1.5, "lr": 0.2}).lr == 0.2
    with pytest.raises(ValueError, match="unknown; choose one of"):
        build_weighting({"method": "pcgrad"})
    with pytest.raises(ValueError, match="bad adaptive_params for 'uwl'"):
        build_weighting({"method": "uwl", "alpha": 1})
