"""Hand-checked outputs and argument checks of the non-sequence ranking models."""

import logging

import pytest
import torch

from trainhub.features import DenseFeature, RandomNormal, SparseFeature
from trainhub.models import toy
from trainhub.models.ranking import AFM, EDCN, FM, LR, AutoInt, DeepFFM, FatDeepFFM, FiBiNet


def _x():
    return {"a": torch.tensor([1, 2, 0]), "b": torch.tensor([3, 0, 4]), "c": torch.tensor([0, 1, 1]),
            "d": torch.tensor([0.5, -1.0, 2.0])}


def toy_init():
    return RandomNormal(0.0, 0.5)


def _sparse(dim=4):
    return [SparseFeature("a", 5, dim), SparseFeature("b", 6, dim), SparseFeature("c", 2, dim)]


def test_lr_is_bias_plus_one_weight_per_id_plus_dense():
    model = LR(_sparse() + [DenseFeature("d")])
    x = _x()
    w = {n: model.linear.weights.tables[n].weight.squeeze(1) for n in "abc"}
    expected = (model.linear.bias + w["a"][x["a"]] + w["b"][x["b"]] + w["c"][x["c"]]
                + model.linear.dense.weight[0, 0] * x["d"])
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_fm_adds_all_pairwise_dot_products():
    torch.manual_seed(0)
    feats = [SparseFeature(n, 6, 3, initializer=toy_init()) for n in "abc"]
    model = FM(feats + [DenseFeature("d")])
    x = _x()
    v = {n: model.embedding.tables[n].weight[x[n]] for n in "abc"}
    pairs = (v["a"] * v["b"]).sum(1) + (v["a"] * v["c"]).sum(1) + (v["b"] * v["c"]).sum(1)
    assert torch.allclose(model(x), model.linear(x) + pairs, atol=1e-5)


def test_afm_with_two_fields_is_linear_plus_projected_product():
    # One pair: its softmax weight is exactly 1.
    feats = [SparseFeature("a", 5, 4, initializer=toy_init()), SparseFeature("b", 6, 4, initializer=toy_init())]
    model = AFM(feats, embed_dim=4, t=8)
    x = _x()
    va, vb = model.embedding.tables["a"].weight[x["a"]], model.embedding.tables["b"].weight[x["b"]]
    expected = model.linear(torch.cat([va, vb], 1)).squeeze(1) + model.p(va * vb).squeeze(1)
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_afm_attention_weights_vary_across_pairs():
    torch.manual_seed(0)
    feats = [SparseFeature(n, 6, 4, initializer=toy_init()) for n in "abc"]
    model = AFM(feats, embed_dim=4, t=8)
    fields = model.embedding(_x(), feats)
    weights = torch.softmax(model.attention(fields[:, model.rows] * fields[:, model.cols]), dim=1)
    assert torch.allclose(weights.sum(1), torch.ones(3, 1))
    assert weights.std() > 0  # not Torch-RecHub's constant weight


def test_afm_checks_embed_dim():
    with pytest.raises(ValueError, match="embed_dim=4, AFM was given embed_dim=8"):
        AFM(_sparse(), embed_dim=8)


@pytest.mark.parametrize("bridge", ["hadamard_product", "pointwise_addition", "concatenation", "attention_pooling"])
def test_edcn_bridges(bridge):
    model = EDCN(_sparse() + [DenseFeature("d")], 2, {"dims": [99], "dropout": 0.0}, bridge_type=bridge)
    assert model(_x()).shape == (3,)


def test_edcn_regulation_starts_as_identity_and_keeps_mlp_params():
    params = {"dims": [99], "dropout": 0.0}
    model = EDCN(_sparse(), 1, params, temperature=2)
    assert params == {"dims": [99], "dropout": 0.0}  # Torch-RecHub overwrites the caller's dict
    embed = torch.randn(3, 12)
    cross, deep = model.regulation[0](embed)
    assert torch.allclose(cross, embed) and torch.allclose(deep, embed)
    with pytest.raises(ValueError, match="bridge_type"):
        EDCN(_sparse(), 1, {}, bridge_type="nope")


@pytest.mark.parametrize("kind", ["field_all", "field_each", "field_interaction"])
def test_fibinet_bilinear_types(kind):
    model = FiBiNet(_sparse(), {"dims": [8]}, bilinear_type=kind)
    assert model(_x()).shape == (3,)


def test_fibinet_ignores_dense_features_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        model = FiBiNet(_sparse() + [DenseFeature("d")], {"dims": [8]})
    assert "ignores dense features ['d']" in caplog.text
    assert model.mlp.mlp[0].in_features == 3 * 2 * 4  # F(F-1) * D with F = 3


def test_deepffm_accepts_torch_rechub_style_enlarged_vocab():
    linear = [SparseFeature(n, 6, 1) for n in "abc"]
    cross = [SparseFeature(n, 6 * 3, 4) for n in "abc"]  # Torch-RecHub sizes cross tables vocab * F
    for model in (DeepFFM(linear, cross, 4, {"dims": [8]}), FatDeepFFM(linear, cross, 4, 1, {"dims": [8]})):
        assert model(_x()).shape == (3,)
        assert model.ffm_embedding.tables["a"].weight.shape == (18, 3 * 4)


def test_deepffm_linear_part_is_the_sum_of_linear_embeddings():
    linear = [SparseFeature(n, 6, 1) for n in "ab"]
    model = DeepFFM(linear, _sparse(), 4, {"dims": [8]}).eval()
    x = _x()
    tables = model.linear_embedding.tables
    y_linear = tables["a"].weight[x["a"], 0] + tables["b"].weight[x["b"], 0]
    crosses = model.ffm(model.ffm_embedding(x))
    expected = y_linear + model.mlp_out(crosses.flatten(1)).squeeze(1) + model.b
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_autoint_checks_and_without_mlp():
    with pytest.raises(ValueError, match="at least one sparse feature"):
        AutoInt([], [DenseFeature("d")])
    with pytest.raises(ValueError, match="divisible by num_heads"):
        AutoInt(_sparse(dim=5), [], num_heads=2)
    model = AutoInt(_sparse(), [DenseFeature("d")], num_layers=1, mlp_params=None)
    assert model.mlp is None and model(_x()).shape == (3,)


def test_lr_and_fm_work_on_the_toy_batch_with_sequences():
    feats = toy.sparse_features() + toy.dense_features() + toy.history_features()
    assert LR(feats)(toy.batch()).shape == (toy.BATCH_SIZE,)
    assert FM(feats)(toy.batch()).shape == (toy.BATCH_SIZE,)
