"""Multi-interest helpers: padding on either side, best-interest scoring, capsules and attention heads."""

from __future__ import annotations

import torch

from trainhub.nn.multi_interest import (
    CapsuleRouting,
    SelfAttentiveInterests,
    gather_last,
    interest_scores,
    last_valid_index,
    left_align,
    squash,
)


def test_interest_scores_take_the_best_interest_per_item():
    user = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # [1, K=2, D=2]
    items = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    assert torch.equal(interest_scores(user, items), torch.tensor([[2.0, 3.0, 1.0]]))
    assert torch.equal(interest_scores(user[:, 0], items), torch.tensor([[2.0, 0.0, 1.0]]))


def test_last_position_and_left_align_work_for_pre_and_post_padding():
    mask = torch.tensor([[False, True, True], [True, True, False]])
    seq = torch.arange(6.0).view(2, 3, 1)
    assert last_valid_index(mask).tolist() == [2, 1]
    assert gather_last(seq, mask).view(-1).tolist() == [2.0, 4.0]
    aligned_mask, aligned = left_align(mask, seq)
    assert aligned_mask.tolist() == [[True, True, False], [True, True, False]]
    assert aligned.view(2, 3)[:, :2].tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_squash_keeps_direction_and_bounds_the_norm():
    z = torch.tensor([[3.0, 4.0]])
    out = squash(z)
    assert torch.allclose(out / out.norm(), z / 5.0, atol=1e-6)
    assert 0.0 < float(out.norm()) < 1.0


def test_extractors_ignore_padding_and_return_k_interests():
    torch.manual_seed(0)
    seq = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    changed = seq.clone()
    changed[0, 2:] = 100.0  # padding positions of row 0
    for layer in (CapsuleRouting(3, interest_num=2, max_length=4), SelfAttentiveInterests(3, interest_num=2)):
        out = layer(seq, mask)
        assert out.shape == (2, 2, 3)
        assert torch.allclose(layer(changed, mask)[0], out[0], atol=1e-5)
