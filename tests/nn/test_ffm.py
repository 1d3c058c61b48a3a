import torch

from trainhub.features import SequenceFeature, SparseFeature
from trainhub.nn import CEN, FFM, FieldAwareEmbedding


def test_ffm_pairs_match_hand_computation():
    x = torch.randn(2, 3, 3, 4)  # [B, F, F, D]
    out = FFM(3)(x)
    pairs = [(0, 1), (0, 2), (1, 2)]
    for p, (i, j) in enumerate(pairs):
        assert torch.allclose(out[:, p], x[:, i, j] * x[:, j, i])
    assert torch.allclose(FFM(3, reduce_sum=True)(x), out.sum(-1))


def test_field_aware_embedding_layout_and_masked_pooling():
    feats = [SparseFeature("a", 5, 2), SequenceFeature("s", 6, 2, pooling="mean")]
    emb = FieldAwareEmbedding(feats, embed_dim=3)
    x = {"a": torch.tensor([1, 4]), "s": torch.tensor([[2, 3, 0], [5, 0, 0]])}
    out = emb(x)
    assert out.shape == (2, 2, 2, 3)
    table_a, table_s = emb.tables["a"].weight, emb.tables["s"].weight
    assert torch.allclose(out[0, 0, 1], table_a[1].reshape(2, 3)[1])
    assert torch.allclose(out[0, 1], ((table_s[2] + table_s[3]) / 2).reshape(2, 3))
    assert torch.allclose(out[1, 1], table_s[5].reshape(2, 3))


def test_cen_rescales_each_cross_and_flattens():
    torch.manual_seed(0)
    cen = CEN(embed_dim=4, num_field_crosses=3, reduction_ratio=1)
    x = torch.randn(2, 3, 4)
    out = cen(x).reshape(2, 3, 4)
    weights = cen.excitation(cen.compose(x).squeeze(-1))
    assert torch.allclose(out, x * weights.unsqueeze(-1))
