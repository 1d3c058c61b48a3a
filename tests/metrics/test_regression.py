"""MSE as a function and as a streaming, syncable metric, against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_squared_error

from trainhub.metrics import MeanSquaredError, mse_score


def test_mse_matches_sklearn_and_empty_is_nan():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=50), rng.normal(size=50)
    assert mse_score(y, p) == pytest.approx(mean_squared_error(y, p))
    assert math.isnan(mse_score([], []))
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        mse_score([1, 2], [1])


def test_streaming_equals_one_pass_and_merges_ranks():
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=40), rng.normal(size=40)
    whole = MeanSquaredError()
    whole.update(torch.tensor(p), torch.tensor(y))
    parts = [MeanSquaredError(), MeanSquaredError()]
    for m, rows in zip(parts, (slice(0, 15), slice(15, 40))):
        m.update(torch.tensor(p[rows]), torch.tensor(y[rows]))
    states = [(m._sum, m._count) for m in parts]
    parts[0].sync(lambda obj: states)
    assert parts[0].compute() == pytest.approx(whole.compute()) == pytest.approx(mean_squared_error(y, p))
    assert MeanSquaredError.higher_is_better is False


def test_no_rows_is_nan():
    assert math.isnan(MeanSquaredError().compute())
