import torch
from torch import nn

from trainhub.nn import AUGRU, MaskedGRU


def test_masked_gru_matches_torch_gru_on_the_real_items_for_pre_and_post_padding():
    torch.manual_seed(0)
    gru = MaskedGRU(3, 4)
    ref = nn.GRU(3, 4, batch_first=True)
    ref.load_state_dict({k.replace("cell.", "").replace("_ih", "_ih_l0").replace("_hh", "_hh_l0"): v
                         for k, v in gru.state_dict().items()})
    items = torch.randn(1, 2, 3)
    _, expected = ref(items)
    post = torch.cat([items, torch.zeros(1, 2, 3)], 1)
    pre = torch.cat([torch.zeros(1, 2, 3), items], 1)
    outs, last_post = gru(post, torch.tensor([[True, True, False, False]]))
    _, last_pre = gru(pre, torch.tensor([[False, False, True, True]]))
    assert torch.allclose(last_post, expected[0], atol=1e-6)
    assert torch.allclose(last_pre, expected[0], atol=1e-6)
    assert torch.equal(outs[0, 2:], torch.zeros(2, 4))


def test_augru_with_zero_attention_never_moves_the_state():
    torch.manual_seed(0)
    cell = AUGRU(3, 4)
    x, mask = torch.randn(2, 5, 3), torch.ones(2, 5, dtype=torch.bool)
    assert torch.equal(cell(x, torch.zeros(2, 5), mask), torch.zeros(2, 4))
    assert cell(x, torch.ones(2, 5), mask).abs().sum() > 0


def test_augru_skips_padding():
    torch.manual_seed(0)
    cell = AUGRU(3, 4)
    x, att = torch.randn(1, 3, 3), torch.rand(1, 3)
    mask = torch.tensor([[True, False, True]])
    x_changed = x.clone()
    x_changed[0, 1] = 50.0
    dropped = cell(x[:, [0, 2]], att[:, [0, 2]], torch.ones(1, 2, dtype=torch.bool))
    assert torch.allclose(cell(x_changed, att, mask), dropped, atol=1e-6)
