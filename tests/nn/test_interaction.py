"""Interaction layers against their definitions: FM's identity, cross layers' recurrences."""

from __future__ import annotations

import torch

from trainhub.nn.interaction import FM, LR, CrossNetMix, CrossNetV2, CrossNetwork


def test_fm_equals_the_sum_over_field_pairs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, generator=g)  # [B, F, D]
    pairs = sum((x[:, i] * x[:, j]) for i in range(4) for j in range(i + 1, 4))  # [B, D]
    assert torch.allclose(FM(reduce_sum=False)(x), pairs, atol=1e-5)
    assert torch.allclose(FM()(x), pairs.sum(dim=1, keepdim=True), atol=1e-5)


def test_lr_is_one_linear_output():
    assert LR(6)(torch.randn(2, 6)).shape == (2, 1)


def test_cross_network_follows_its_recurrence():
    torch.manual_seed(0)
    net = CrossNetwork(3, num_layers=2)
    x0 = torch.randn(4, 3)
    x = x0
    for w, b in zip(net.w, net.b):
        x = x0 * (x @ w.weight.T) + b + x
    assert torch.allclose(net(x0), x)


def test_cross_net_v2_and_mix_keep_the_width_and_train():
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    for layer in (CrossNetV2(6, 2), CrossNetMix(6, num_layers=2, low_rank=3, num_experts=2)):
        out = layer(x)
        assert out.shape == (4, 6) and torch.isfinite(out).all()
        out.sum().backward()
        assert all(p.grad is not None for p in layer.parameters())


def test_fm_gradient_equals_autograd_through_the_pairwise_sum():
    torch.manual_seed(0)
    x = torch.randn(5, 4, 3, requires_grad=True)
    out = FM(reduce_sum=True)(x)
    assert "FMSum" in type(out.grad_fn).__name__
    weights = torch.randn(5, 1)
    (out * weights).sum().backward()
    got = x.grad.clone()
    x.grad = None
    pairs = sum((x[:, i] * x[:, j]).sum(dim=1, keepdim=True) for i in range(4) for j in range(i + 1, 4))
    (pairs * weights).sum().backward()
    torch.testing.assert_close(out, pairs)
    torch.testing.assert_close(got, x.grad)
    x.grad = None
    FM()(x).sum().backward()  # a gradient broadcast from a scalar (stride 0)
    torch.testing.assert_close(x.grad, x.sum(dim=1, keepdim=True).detach() - x.detach())


def test_fm_second_derivatives_and_func_grad_match_the_plain_form():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)

    def plain(t):
        total = t.sum(dim=1)
        return 0.5 * ((total * total).sum(dim=1, keepdim=True) - (t * t).sum(dim=(1, 2)).unsqueeze(1))

    def penalty(f):
        (g,) = torch.autograd.grad(f(x).square().sum(), x, create_graph=True)
        return torch.autograd.grad(g.square().sum(), x)[0]

    fm = FM(reduce_sum=True)
    torch.testing.assert_close(penalty(fm), penalty(plain))
    assert torch.autograd.gradgradcheck(fm, (x,))
    torch.testing.assert_close(torch.func.grad(lambda t: fm(t).sum())(x.detach()),
                               torch.func.grad(lambda t: plain(t).sum())(x.detach()))
