"""Shared fixtures: a small learnable synthetic CTR dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainhub.features import DenseFeature, SparseFeature

# Test tensors are tiny: one intra-op thread avoids oversubscribing small CI machines.
torch.set_num_threads(1)

SHARED_DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


def make_ctr_data(n: int = 600, seed: int = 0):
    """Labels depend on two sparse ids and a dense value, so a model can learn them."""
    rng = np.random.default_rng(seed)
    x = {
        "user": rng.integers(0, 10, n),
        "item": rng.integers(0, 12, n),
        "city": rng.integers(0, 5, n),
        "price": rng.random(n).astype(np.float32),
    }
    user_w = rng.normal(0, 1.5, 10)
    item_w = rng.normal(0, 1.5, 12)
    logit = user_w[x["user"]] + item_w[x["item"]] + 2.0 * (x["price"] - 0.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    sparse = [SparseFeature("user", 10, embed_dim=8), SparseFeature("item", 12, embed_dim=8),
              SparseFeature("city", 5, embed_dim=8)]
    dense = [DenseFeature("price")]
    return sparse, dense, x, y


@pytest.fixture
def ctr_data():
    return make_ctr_data()
