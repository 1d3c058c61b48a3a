import pytest
import torch

from trainhub.features import SequenceFeature, SparseFeature
from trainhub.nn import EmbeddingCollection
from trainhub.nn.fused_table import sum_rows
from trainhub.optim.rowwise import coalesced


def test_sum_rows_adds_the_values_of_each_id_in_a_fixed_order():
    torch.manual_seed(0)
    ids = torch.randint(0, 40, (500,)) * 1000
    values = torch.randn(500, 3)
    rows, sums = sum_rows(ids, values)
    ref_rows, inverse = torch.unique(ids, sorted=True, return_inverse=True)
    assert torch.equal(rows, ref_rows)
    torch.testing.assert_close(sums, torch.zeros(len(rows), 3).index_add_(0, inverse, values))
    assert torch.equal(sum_rows(ids, values)[1], sums)  # repeatable to the bit


def _features():
    return [SparseFeature("a", 7, 4), SparseFeature("b", 5, 4, padding_idx=0),
            SequenceFeature("h", 7, 4, pooling="sum", shared_with="a"), SparseFeature("c", 3, 2)]


def _grads(sparse: bool):
    torch.manual_seed(0)
    coll = EmbeddingCollection(_features(), sparse_grad=sparse)
    x = {"a": torch.tensor([1, 1, 6]), "b": torch.tensor([0, 2, 2]), "h": torch.tensor([[1, 3], [0, 0], [6, 6]]),
         "c": torch.tensor([2, 0, 2])}
    feats = _features()
    out = coll(x, feats[:3]).pow(2).sum() + coll.embed_one(feats[3], x).sum() * 3
    out.backward()
    return {k: fused.weight.grad for k, fused in coll.fused.items()}


def test_row_sparse_gradient_equals_dense_gradient_and_spares_padding():
    sparse, dense = _grads(True), _grads(False)
    assert set(sparse) == {"d4", "d2"}
    for key in sparse:
        assert sparse[key].is_sparse and coalesced(sparse[key])._nnz() == sparse[key]._nnz()
        assert torch.allclose(sparse[key].to_dense(), dense[key])
    b_pad_row = 7  # table "b" starts after the 7 rows of "a"
    assert torch.equal(dense["d4"][b_pad_row], torch.zeros(4))


def test_state_dict_keeps_one_entry_per_logical_table_and_round_trips():
    coll = EmbeddingCollection(_features())
    state = coll.state_dict()
    assert sorted(state) == ["tables.a.weight", "tables.b.weight", "tables.c.weight"]
    assert state["tables.b.weight"].shape == (5, 4)
    other = EmbeddingCollection(_features())
    other.load_state_dict(state)
    for name in "abc":
        assert torch.equal(other.tables[name].weight, coll.tables[name].weight)


def test_loading_a_table_of_the_wrong_size_names_it():
    state = EmbeddingCollection(_features()).state_dict()
    state["tables.b.weight"] = torch.zeros(6, 4)
    with pytest.raises(RuntimeError, match=r"tables\.b\.weight.*\(6, 4\).*\(5, 4\)"):
        EmbeddingCollection(_features()).load_state_dict(state)


def test_table_view_writes_reach_the_fused_weight_and_is_callable():
    coll = EmbeddingCollection(_features())
    with torch.no_grad():
        coll.tables["b"].weight[3] = 1.5
    assert torch.equal(coll.fused["d4"].weight[7 + 3], torch.full((4,), 1.5))
    assert torch.equal(coll.tables["b"](torch.tensor([[3]])), torch.full((1, 1, 4), 1.5))


def test_one_bad_id_among_many_features_is_named():
    coll = EmbeddingCollection(_features())
    x = {"a": torch.tensor([1, 2]), "b": torch.tensor([0, 5]), "h": torch.tensor([[1, 0], [2, 0]]),
         "c": torch.tensor([0, 1])}
    with pytest.raises(ValueError, match=r"'b': id 5 is outside \[0, vocab_size=5\)"):
        coll(x, _features()[:3])


@pytest.mark.parametrize("count", [0, 5, 16383, 16384, 20000, 32767, 32768, 40000])
def test_fast_id_sort_is_the_stable_sort(count):
    from trainhub.nn.fused_table import _groups, _sort_ids

    g = torch.Generator().manual_seed(count)
    ids = torch.randint(0, 500, (count,), generator=g)  # many repeats: stability shows in the order
    expected_ids, expected_order = torch.sort(ids, stable=True)
    sorted_ids, order = _sort_ids(ids, 500)
    assert torch.equal(sorted_ids.long(), expected_ids) and torch.equal(order, expected_order)
    rows, order, offsets = _groups(ids, 500)
    assert rows.dtype == torch.int64 and torch.equal(rows, torch.unique(ids))
    assert torch.equal(ids[order[offsets]], rows)  # each run starts at its id
