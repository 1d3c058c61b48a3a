"""Feature specs and model parameters survive a JSON round trip; the preprocessor saves and reloads
to the same encoding."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from trainhub.features import DenseFeature, SequenceFeature, SparseFeature, XavierUniform
from trainhub.models import create_model
from trainhub.runs.prepare import Preprocessor
from trainhub.runs.specs import (
    feature_from_dict,
    feature_to_dict,
    params_from_json,
    params_to_json,
    resolve_feature_refs,
)


def test_feature_specs_round_trip_through_json():
    feats = [SparseFeature("item", 50, embed_dim=8, padding_idx=0, initializer=XavierUniform(0.5)),
             SequenceFeature("hist", 50, embed_dim=8, pooling="concat", shared_with="item"),
             DenseFeature("price", embed_dim=2)]
    back = [feature_from_dict(json.loads(json.dumps(feature_to_dict(f)))) for f in feats]
    assert back == feats


def test_model_params_keep_feature_names_and_plain_values():
    item = SparseFeature("item", 50, embed_dim=8)
    hist = SequenceFeature("hist", 50, embed_dim=8, pooling="concat", shared_with="item")
    user = SparseFeature("user", 10, embed_dim=8)
    features = {f.name: f for f in (item, hist, user)}
    groups = {"history": ["hist"], "target": ["item"], "all": ["user", "item", "hist"]}
    params = {"features": resolve_feature_refs("user", features, groups, "p"),  # a column alone: one feature
              "history_features": resolve_feature_refs("history", features, groups, "p"),  # a group: a list
              "target_features": resolve_feature_refs(["target"], features, groups, "p"),
              "mlp_params": {"dims": [8]}, "attention_mlp_params": {"dims": [4]}}
    assert params["features"] is user and params["history_features"] == [hist]
    stored = json.loads(json.dumps(params_to_json({**params, "features": [user]})))
    assert stored["features"] == {"$features": ["user"]} and stored["mlp_params"] == {"dims": [8]}
    model = create_model("DIN", **params_from_json(stored, features))
    batch = {"user": torch.tensor([1, 2]), "item": torch.tensor([3, 4]), "hist": torch.tensor([[3, 0], [4, 5]])}
    assert model(batch).shape == (2,)  # the rebuilt model runs
    with pytest.raises(ValueError, match="'nope' is neither a feature column"):
        resolve_feature_refs(["nope"], features, groups, "model.params.features")


def test_preprocessor_reloads_to_the_same_encoding(tmp_path):
    train = pd.DataFrame({"item": ["a", "b", "a", "c"], "item2": ["b", "zz", None, "a"], "city": ["x", "y", "x", "x"],
                          "hist": ["a,b", "", "c,a,b", None], "price": [1.0, 3.0, np.nan, 5.0], "y": [0, 1, 1, 0]})
    pre = Preprocessor({"item": {}, "item2": {"vocab": "item"}, "city": {"hash_buckets": 7}}, ["price"],
                       {"hist": {"vocab": "item", "max_len": 2, "pooling": "mean"}}, ["y"], embed_dim=4).fit(train)
    pre.save(tmp_path)
    again = Preprocessor.load(tmp_path)
    x, y = pre.transform(train), again.transform(train)
    assert all(np.array_equal(x[k], y[k]) for k in x)
    assert x["item2"].tolist() == [x["item"][1], 1, 0, x["item"][0]]  # shares item's ids; unseen -> OOV, NaN -> 0
    assert x["hist"].shape == (4, 2) and x["hist"][3].tolist() == [0, 0]
    assert x["price"].tolist() == pytest.approx([0.0, 0.5, 0.5, 1.0])  # NaN -> the mean (3.0), then min-max
    feats = again.features()
    assert feats["item2"].shared_with == "item" and feats["hist"].shared_with == "item"
    assert feats["city"].vocab_size == 9 and feats["item"].embed_dim == 4
    with pytest.raises(ValueError, match="column 'city' has more than one role"):
        Preprocessor({"city": {}}, ["city"], {}, [])
