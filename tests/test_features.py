import dataclasses

import pytest
import torch

from trainhub.features import DenseFeature, SequenceFeature, SparseFeature, auto_embed_dim
from trainhub.models.ranking import DeepFM


def test_sparse_feature_defaults_and_immutability():
    f = SparseFeature("user", vocab_size=1000)
    assert f.embed_dim == auto_embed_dim(1000) == 33
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.embed_dim = 4


def test_sequence_feature_positional_order_matches_torch_rechub():
    f = SequenceFeature("hist", 50, 8, "sum", "item", 0)
    assert (f.pooling, f.shared_with, f.padding_idx) == ("sum", "item", 0)
    assert not isinstance(f, SparseFeature)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: SparseFeature("", 10), "non-empty"),
        (lambda: SparseFeature("a", 0), "vocab_size"),
        (lambda: SparseFeature("a", 5, padding_idx=5), "padding_idx"),
        (lambda: SequenceFeature("a", 5, pooling="max"), "pooling"),
        (lambda: DenseFeature("a", embed_dim=0), "embed_dim"),
    ],
)
def test_bad_feature_specs_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_two_models_from_one_feature_list_do_not_share_weights():
    features = [SparseFeature("a", 10, embed_dim=4), SparseFeature("b", 10, embed_dim=4)]
    m1 = DeepFM(features, features, {"dims": [8]})
    m2 = DeepFM(features, features, {"dims": [8]})
    w1 = m1.embedding.tables["a"].weight
    w2 = m2.embedding.tables["a"].weight
    assert w1.data_ptr() != w2.data_ptr()
    with torch.no_grad():
        w1.add_(1.0)
    assert not torch.allclose(w1, w2)
