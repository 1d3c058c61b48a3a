import torch

from trainhub.nn import MLP, Dropout


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
