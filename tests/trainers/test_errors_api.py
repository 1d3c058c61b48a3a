"""Python API parameter errors name the parameter and the value (instead of a message from deep
inside torch)."""

from __future__ import annotations

import numpy as np
import pytest

from trainhub.data import DataGenerator
from trainhub.features import SparseFeature
from trainhub.models.ranking import LR
from trainhub.trainers import CTRTrainer


def test_optimizer_given_by_name_or_bad_params_is_named():
    model = LR([SparseFeature("a", 5)])
    with pytest.raises(TypeError, match=r"optimizer_fn must be an optimizer class .* got 'adam' \(did you mean "
                                        r"torch.optim.Adam\?\)"):
        CTRTrainer(model, optimizer_fn="adam")
    with pytest.raises(TypeError, match="optimizer_params must be a dict"):
        CTRTrainer(model, optimizer_params=[("lr", 0.1)])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_batch_size_is_checked(bad):
    with pytest.raises(ValueError, match=rf"batch_size must be an integer >= 1, got {bad!r}"):
        DataGenerator({"a": np.arange(4)}, np.zeros(4)).generate_dataloader(batch_size=bad)
