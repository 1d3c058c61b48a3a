import pytest
import torch

from trainhub.features import DenseFeature, SequenceFeature, SparseFeature
from trainhub.nn import EmbeddingCollection, masked_pool


def test_mean_pooling_ignores_padding_without_padding_idx():
    seq = SequenceFeature("hist", 10, embed_dim=3, pooling="mean")
    coll = EmbeddingCollection([seq])
    ids = torch.tensor([[4, 5, 0, 0], [7, 0, 0, 0]])
    out = coll.embed_one(seq, {"hist": ids})
    table = coll.tables["hist"].weight
    assert torch.allclose(out[0], (table[4] + table[5]) / 2)
    assert torch.allclose(out[1], table[7])


def test_sum_pooling_honours_padding_idx_and_all_padding_row_is_zero():
    emb = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    out = masked_pool(emb, mask, "sum")
    assert torch.allclose(out[0], emb[0, 0] + emb[0, 2])
    assert torch.equal(out[1], torch.zeros(4))
    assert torch.equal(masked_pool(emb, mask, "mean")[1], torch.zeros(4))


def test_shared_with_reads_one_table():
    item = SparseFeature("item", 10, embed_dim=4)
    hist = SequenceFeature("hist", 10, embed_dim=4, shared_with="item")
    coll = EmbeddingCollection([item, hist])
    assert list(coll.tables) == ["item"]
    x = {"item": torch.tensor([3]), "hist": torch.tensor([[3, 0]])}
    assert torch.allclose(coll.embed_one(item, x), coll.embed_one(hist, x))


def test_shared_with_unknown_feature_is_an_error():
    with pytest.raises(ValueError, match="shared_with 'nope'"):
        EmbeddingCollection([SequenceFeature("hist", 10, 4, shared_with="nope")])


def test_stacked_and_squeezed_shapes():
    feats = [SparseFeature("a", 5, 4), SparseFeature("b", 6, 4), DenseFeature("d")]
    coll = EmbeddingCollection(feats)
    x = {"a": torch.tensor([1, 2]), "b": torch.tensor([0, 5]), "d": torch.tensor([0.5, 1.0])}
    assert coll(x, feats[:2]).shape == (2, 2, 4)
    squeezed = coll(x, feats, squeeze_dim=True)
    assert squeezed.shape == (2, 9)
    assert torch.equal(squeezed[:, -1], x["d"])


def test_missing_feature_is_named():
    feats = [SparseFeature("user_id", 5, 4)]
    with pytest.raises(KeyError, match="'user_id' is missing from the batch"):
        EmbeddingCollection(feats)({"item_id": torch.tensor([1])}, feats)


def test_id_outside_vocab_is_named():
    feats = [SparseFeature("user_id", 5, 4)]
    with pytest.raises(ValueError, match=r"'user_id': id 7 is outside \[0, vocab_size=5\)"):
        EmbeddingCollection(feats)({"user_id": torch.tensor([1, 7])}, feats)
    with pytest.raises(ValueError, match="id -1"):
        EmbeddingCollection(feats)({"user_id": torch.tensor([-1, 2])}, feats)


def test_padding_idx_row_is_zero():
    coll = EmbeddingCollection([SparseFeature("a", 5, 4, padding_idx=0)])
    assert torch.equal(coll.tables["a"].weight[0], torch.zeros(4))


class _Pooled(torch.nn.Module):
    """Embeds a sparse and a sequence feature with id checks on, as every model does."""

    def __init__(self):
        super().__init__()
        self.features = [SparseFeature("user_id", 5, 4), SequenceFeature("hist", 7, 4, pooling="mean")]
        self.embedding = EmbeddingCollection(self.features, check_inputs=True, sparse_grad=True)

    def forward(self, user_id, hist):
        return self.embedding({"user_id": user_id, "hist": hist}, self.features).sum(1)  # [B, D]


def test_id_check_does_not_block_torch_export_with_a_dynamic_batch():
    # The check reads ids on the host (aminmax); traced, it would fail with GuardOnDataDependentSymNode.
    model = _Pooled().train()  # row-sparse gradients on: tracing takes the plain gather
    user, hist = torch.tensor([1, 2, 3]), torch.tensor([[1, 2, 0], [3, 0, 0], [6, 5, 4]])
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (user, hist), dynamic_shapes=({0: batch}, {0: batch}))
    more_user, more_hist = torch.tensor([4, 0, 1, 2, 3]), torch.randint(0, 7, (5, 3))
    assert torch.allclose(program.module()(more_user, more_hist), model(more_user, more_hist))
    with pytest.raises(ValueError, match="'user_id': id 9"):  # eager calls still check
        model(torch.tensor([9]), torch.tensor([[1, 2, 3]]))


def test_state_dict_names_tables_but_keep_vars_returns_the_live_fused_weight():
    model = _Pooled()
    assert {"embedding.tables.user_id.weight", "embedding.tables.hist.weight"} <= set(model.state_dict())
    live = model.state_dict(keep_vars=True)  # what tracers lift into graph inputs
    assert live["embedding.fused.d4.weight"] is model.embedding.fused["d4"].weight
    assert not any(k.startswith("embedding.tables.") for k in live)


def test_squeezed_columns_follow_the_feature_list_and_flat_parts_join_to_them():
    # the order of the list: a first layer's weight columns keep their meaning in saved models
    feats = [DenseFeature("d1"), SparseFeature("a", 5, 4), SparseFeature("b", 6, 4), DenseFeature("d2")]
    coll = EmbeddingCollection(feats)
    x = {"a": torch.tensor([1, 2]), "b": torch.tensor([0, 5]), "d1": torch.tensor([0.5, 1.0]),
         "d2": torch.tensor([3.0, 4.0])}
    squeezed = coll(x, feats, squeeze_dim=True)
    want = torch.cat([x["d1"].unsqueeze(1), coll.embed_one(feats[1], x), coll.embed_one(feats[2], x),
                      x["d2"].unsqueeze(1)], dim=1)
    assert torch.equal(squeezed, want)
    parts = coll.flat_parts(x, feats)
    assert [p.shape[1] for p in parts] == [1, 8, 1]  # the lookup block as one view
    assert torch.equal(torch.cat(parts, dim=1), want)
