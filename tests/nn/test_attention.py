import pytest
import torch

from trainhub.nn import InteractingLayer, TargetAttention, masked_softmax


def test_masked_softmax_zero_weight_at_padding_and_empty_rows():
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    w = masked_softmax(scores, mask)
    expected = torch.softmax(torch.tensor([1.0, 2.0]), 0)
    assert torch.allclose(w[0, :2], expected) and w[0, 2] == 0
    assert torch.equal(w[1], torch.zeros(3))


@pytest.mark.parametrize("use_softmax", [False, True])
def test_target_attention_matches_hand_computation_on_real_items(use_softmax):
    torch.manual_seed(0)
    att = TargetAttention(4, dims=[6], activation="relu", use_softmax=use_softmax).eval()
    history, target = torch.randn(2, 3, 4), torch.randn(2, 4)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = att(history, target, mask)
    for b in range(2):
        real = history[b, mask[b]]  # [n, 4]
        t = target[b].expand_as(real)
        raw = att.scorer(torch.cat([t, real, t - real, t * real], -1)).squeeze(-1)
        w = torch.softmax(raw, 0) if use_softmax else raw
        assert torch.allclose(out[b], (w.unsqueeze(-1) * real).sum(0), atol=1e-6)


def test_target_attention_in_training_mode_ignores_padding_even_with_dice():
    torch.manual_seed(0)
    att = TargetAttention(4, dims=[6], activation="dice").train()
    history, target = torch.randn(4, 3, 4), torch.randn(4, 4)
    mask = torch.tensor([[True, True, False]] * 4)
    out = att(history, target, mask)
    history_changed = history.clone()
    history_changed[:, 2] = 100.0  # garbage at padding positions
    assert torch.allclose(att(history_changed, target, mask), out, atol=1e-6)


def test_interacting_layer_is_permutation_equivariant_over_fields():
    torch.manual_seed(0)
    layer = InteractingLayer(8, num_heads=2).eval()
    x = torch.randn(3, 5, 8)
    perm = torch.tensor([4, 2, 0, 1, 3])
    assert torch.allclose(layer(x)[:, perm], layer(x[:, perm]), atol=1e-6)
    assert layer(x).min() >= 0  # ReLU output


def test_interacting_layer_checks_heads():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        InteractingLayer(8, num_heads=3)
