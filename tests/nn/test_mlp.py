import pytest
import torch
from torch import nn

from trainhub.nn import MLP, Dropout
from trainhub.nn.mlp import stacked_mlps


def test_dropout_keeps_each_value_with_probability_one_minus_p_and_rescales():
    torch.manual_seed(0)
    drop = Dropout(0.25)
    x = torch.ones(200_000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75))
    # four mask elements come from one 64-bit draw: neighbours must still be independent
    both = (kept[:-1] & kept[1:]).float().mean().item()
    assert abs(both - 0.75**2) < 0.005
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # gradient flows through kept values only, with the scale
    drop.eval()
    assert drop(x) is x
    assert torch.equal(Dropout(1.0)(torch.ones(3)), torch.zeros(3))


def test_mlp_blocks_and_output_width():
    mlp = MLP(5, dims=[8, 4], dropout=0.1)
    assert [type(m).__name__ for m in mlp.mlp] == ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert mlp(torch.randn(3, 5)).shape == (3, 1) and mlp.output_dim == 1
    assert MLP(5, output_layer=False, dims=[8]).output_dim == 8


def test_dice_on_a_sequence_uses_statistics_over_batch_and_positions():
    from trainhub.nn.mlp import Dice

    torch.manual_seed(0)
    dice = Dice(4).train()
    dice.alpha.data.uniform_(-1, 1)
    x = torch.randn(3, 5, 4)
    flat = dice(x.reshape(-1, 4)).reshape(3, 5, 4)  # the [B * L, C] reference
    assert torch.allclose(dice(x), flat, atol=1e-6)
    dice.eval()
    assert torch.allclose(dice(x), dice(x.reshape(-1, 4)).reshape(3, 5, 4), atol=1e-6)


def _experts(count: int, **params) -> list[MLP]:
    torch.manual_seed(0)
    experts = [MLP(12, **params) for _ in range(count)]
    for e in experts:  # distinct running statistics and PReLU slopes, so a mix-up would show
        for m in e.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
            if isinstance(m, nn.PReLU):
                m.weight.data.uniform_(0, 0.5)
    return experts


@pytest.mark.parametrize("params", [
    {"dims": [16, 8], "output_layer": False},
    {"dims": [16, 8, 4], "activation": "prelu", "output_layer": True},
    {"dims": [16], "activation": "tanh", "batch_norm": False, "output_layer": False},
])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_stacked_mlps_equal_the_loop_with_their_gradients_and_running_stats(params, momentum):
    loop, side = _experts(3, **params), _experts(3, **params)
    for m in [*loop, *side]:
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm1d):
                bn.momentum = momentum
    x = torch.randn(32, 12)
    for mode in ("eval", "train", "train"):  # the gradients below are those of a training pass
        for m in [*loop, *side]:
            m.train(mode == "train")
        expected = torch.stack([m(x) for m in loop], dim=1)
        got = stacked_mlps(side, x)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(expected)
    expected.backward(g)
    got.backward(g)
    for a, b in zip(loop, side):
        for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-5, msg=name)
        for (name, ba), bb in zip(a.named_buffers(), b.buffers()):
            torch.testing.assert_close(bb, ba, rtol=1e-5, atol=1e-6, msg=name)


def test_stacked_mlps_fall_back_to_the_loop_for_other_layouts():
    dice = _experts(2, dims=[8], activation="dice", output_layer=False)
    x = torch.randn(16, 12)
    for m in dice:
        m.eval()
    torch.testing.assert_close(stacked_mlps(dice, x), torch.stack([m(x) for m in dice], dim=1))
    mixed = [MLP(12, dims=[8], output_layer=False), MLP(12, dims=[6], output_layer=False)]
    with pytest.raises(RuntimeError):  # unequal widths cannot be stacked, as with the loop
        stacked_mlps(mixed, x)


def test_stacked_dropout_keeps_the_rate():
    experts = _experts(4, dims=[64], dropout=0.5, batch_norm=False, activation="linear", output_layer=False)
    for e in experts:
        nn.init.ones_(e.mlp[0].weight)
        nn.init.zeros_(e.mlp[0].bias)
    out = stacked_mlps(experts, torch.ones(256, 12))
    assert abs(float((out == 0).float().mean()) - 0.5) < 0.02


def test_stacked_mlps_take_the_loop_where_side_by_side_would_differ():
    x = torch.randn(16, 12)

    def check(experts):
        for e in experts:
            e.eval()
        torch.testing.assert_close(stacked_mlps(experts, x), torch.stack([m(x) for m in experts], dim=1))

    hooked = _experts(2, dims=[8], output_layer=False)
    calls = []
    hooked[1].mlp[0].register_forward_hook(lambda *_: calls.append(1))
    check(hooked)
    assert calls  # the hook ran, as in the loop

    class Leaky(nn.LeakyReLU):  # a subclass may carry its own state: exact types only
        def __init__(self, slope):
            super().__init__(slope)

    subclassed = _experts(2, dims=[8], output_layer=False)
    subclassed[0].mlp[2], subclassed[1].mlp[2] = Leaky(0.1), Leaky(0.3)
    check(subclassed)

    counted = _experts(2, dims=[8], output_layer=False)
    for e, n in zip(counted, (3, 7)):
        e.mlp[1].momentum = None  # cumulative averages weigh by each norm's own count
        e.mlp[1].num_batches_tracked.fill_(n)
    for e in counted:
        e.train()
    stacked_mlps(counted, x)
    loop = _experts(2, dims=[8], output_layer=False)
    for e, n in zip(loop, (3, 7)):
        e.mlp[1].momentum = None
        e.mlp[1].num_batches_tracked.fill_(n)
        e.train()
        e(x)
    for a, b in zip(counted, loop):
        torch.testing.assert_close(a.mlp[1].running_mean, b.mlp[1].running_mean)

    empty = [MLP(12, output_layer=False), MLP(12, output_layer=False)]  # no layers: the input twice
    torch.testing.assert_close(stacked_mlps(empty, x), torch.stack([x, x], dim=1))


def test_stacked_mlps_of_an_empty_batch():
    experts = _experts(3, dims=[8, 4], output_layer=True)
    for e in experts:
        e.eval()
    assert stacked_mlps(experts, torch.randn(0, 12)).shape == (0, 3, 1)


def _parts_and_reference(seed=0):
    torch.manual_seed(seed)
    emb = torch.randn(32, 3, 4, requires_grad=True)  # a lookup block
    dense = torch.randn(32, 5)  # dense values: no gradient
    parts = [emb.flatten(1), dense]
    return emb, dense, parts


def test_linear_of_parts_equals_the_concatenated_linear_with_its_gradients():
    from trainhub.nn.mlp import linear_of_parts

    emb, dense, parts = _parts_and_reference()
    linear = nn.Linear(17, 6)
    out = linear_of_parts(linear, parts)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    got = (out.detach(), linear.weight.grad.clone(), linear.bias.grad.clone(), emb.grad.clone())
    linear.zero_grad()
    emb.grad = None
    ref = linear(torch.cat([emb.flatten(1), dense], dim=1))
    ref.backward(grad_out)
    want = (ref.detach(), linear.weight.grad, linear.bias.grad, emb.grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert out.grad_fn is not None and "LinearOfParts" in type(out.grad_fn).__name__


def test_linear_of_parts_without_bias_and_with_every_piece_needing_a_gradient():
    from trainhub.nn.mlp import linear_of_parts

    a, b = torch.randn(8, 3, requires_grad=True), torch.randn(8, 2, requires_grad=True)
    linear = nn.Linear(5, 4, bias=False)
    linear_of_parts(linear, [a, b]).square().sum().backward()
    grads = (a.grad.clone(), b.grad.clone(), linear.weight.grad.clone())
    a.grad = b.grad = linear.weight.grad = None
    linear(torch.cat([a, b], 1)).square().sum().backward()
    for got, want in zip(grads, (a.grad, b.grad, linear.weight.grad)):
        torch.testing.assert_close(got, want)


def test_linear_of_parts_takes_the_concatenated_form_where_it_must():
    from trainhub.nn.mlp import linear_of_parts

    _, _, parts = _parts_and_reference()
    linear = nn.Linear(17, 6)
    seen = []
    handle = linear.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    linear_of_parts(linear, parts)
    handle.remove()
    assert seen == [(32, 17)]  # the hook saw the whole input
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear_of_parts(linear, parts)
    assert out.dtype == torch.bfloat16 and "LinearOfParts" not in type(out.grad_fn).__name__
    with pytest.raises(RuntimeError):  # widths that do not add up fail as the concatenated form does
        linear_of_parts(linear, parts[:1] + [torch.randn(32, 2)])


@pytest.mark.parametrize("batch_norm", [True, False])
def test_mlp_takes_a_list_of_pieces_as_their_concatenation(batch_norm):
    emb, dense, parts = _parts_and_reference()
    torch.manual_seed(1)
    mlp = MLP(17, dims=[8, 4], dropout=0.0, batch_norm=batch_norm)
    out = mlp(parts)
    out.sum().backward()
    grads = [p.grad.clone() for p in mlp.parameters()] + [emb.grad.clone()]
    stats = [b.clone() for b in mlp.buffers()]
    torch.manual_seed(1)
    ref_mlp = MLP(17, dims=[8, 4], dropout=0.0, batch_norm=batch_norm)
    emb.grad = None
    ref = ref_mlp(torch.cat(parts, dim=1))
    ref.sum().backward()
    torch.testing.assert_close(out, ref)
    for got, want in zip(grads, [p.grad for p in ref_mlp.parameters()] + [emb.grad]):
        torch.testing.assert_close(got, want)
    for got, want in zip(stats, ref_mlp.buffers()):
        torch.testing.assert_close(got, want)
    mlp.eval()
    with torch.no_grad():
        torch.testing.assert_close(mlp([emb.flatten(1), dense]), mlp(torch.cat([emb.flatten(1), dense], 1)))


def test_mlp_with_a_hook_on_its_first_layer_sees_the_whole_input():
    _, _, parts = _parts_and_reference()
    mlp = MLP(17, dims=[8])
    seen = []
    mlp.mlp[0].register_forward_pre_hook(lambda m, i: seen.append(i[0].shape))
    mlp(parts)
    assert seen == [(32, 17)]


def test_linear_of_parts_has_the_second_derivatives_and_func_transforms_of_the_concatenated_form():
    from trainhub.nn.mlp import linear_of_parts

    torch.manual_seed(0)
    a = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 2, dtype=torch.float64)
    linear = nn.Linear(5, 4).double()

    def penalty(f):  # a gradient penalty: differentiates through the backward pass
        out = f([a, b])
        (g,) = torch.autograd.grad((out * out).sum() + (a ** 3).sum(), a, create_graph=True)
        grads = torch.autograd.grad(g.square().sum(), [a, linear.weight, linear.bias])
        return out.detach(), grads

    got = penalty(lambda parts: linear_of_parts(linear, parts))
    want = penalty(lambda parts: linear(torch.cat(parts, dim=1)))
    torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(lambda w, x: linear_of_parts(linear, [x, b]) * w.sum(),
                                     (linear.weight, a))

    params = dict(linear.named_parameters())
    def of_parts(p, x):
        return linear_of_parts(_with(linear, p), [x, b]).square().sum()
    def whole(p, x):
        return torch.func.functional_call(linear, p, (torch.cat([x, b], 1),)).square().sum()
    torch.testing.assert_close(torch.func.grad(of_parts)(params, a.detach()), torch.func.grad(whole)(params, a.detach()))
    per_row = torch.func.vmap(lambda x: linear_of_parts(linear, [x[None], b[:1]]).sum())(a.detach())
    torch.testing.assert_close(per_row, linear(torch.cat([a.detach(), b[:1].expand(6, 2)], 1)).sum(1))


def _with(linear, params):
    """A Linear whose weight and bias are ``params`` (for torch.func.grad over them)."""
    clone = nn.Linear(linear.in_features, linear.out_features, dtype=linear.weight.dtype)
    del clone.weight, clone.bias
    clone.weight, clone.bias = params["weight"], params["bias"]
    return clone
