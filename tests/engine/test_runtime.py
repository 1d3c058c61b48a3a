"""The single-process Runtime: device parsing, batches moved, wrappers removed, seeding."""

from __future__ import annotations

import random
from collections import namedtuple

import numpy as np
import pytest
import torch
from torch import nn

from trainhub.engine.runtime import Runtime, move_to_device, resolve_device, seed_everything, unwrap_model, was_seeded


def test_seed_everything_repeats_python_numpy_and_torch_draws():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    seed_everything(7)
    first = draws()
    seed_everything(7)
    assert draws() == first
    assert was_seeded()


def test_seed_must_be_an_integer():
    with pytest.raises(TypeError, match="seed must be an integer"):
        seed_everything(1.5)


def test_move_to_device_keeps_the_nesting_and_named_tuples():
    Pair = namedtuple("Pair", "x y")
    batch = {"a": torch.ones(2), "b": [torch.zeros(1), (torch.ones(1), "text")], "p": Pair(torch.ones(1), 3)}
    moved = move_to_device(batch, torch.device("cpu"))
    assert isinstance(moved["p"], Pair) and moved["p"].y == 3
    assert isinstance(moved["b"][1], tuple) and moved["b"][1][1] == "text"
    assert torch.equal(moved["a"], batch["a"])


def test_unwrap_model_removes_every_wrapper():
    model = nn.Linear(2, 1)
    assert unwrap_model(nn.DataParallel(nn.DataParallel(model))) is model
    assert unwrap_model(model) is model


def test_resolve_device_parses_cpu_and_names_a_missing_gpu():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_single_process_runtime_collectives_are_identities():
    rt = Runtime("cpu")
    assert (rt.rank, rt.world_size, rt.is_main, rt.is_distributed) == (0, 1, True, False)
    assert rt.all_gather_object({"x": 1}) == [{"x": 1}]
    assert rt.broadcast_object([1, 2]) == [1, 2]
    assert rt.mean_over_ranks({"loss": 0.5}) == {"loss": 0.5}


def test_runtime_seed_seeds_this_process_with_seed_plus_rank():
    Runtime("cpu", seed=11)
    after_runtime = float(torch.rand(()))
    seed_everything(11)  # rank 0: seed as given
    assert float(torch.rand(())) == after_runtime
