"""Length-grouped and random batch orders: deterministic per (seed, epoch), complete, tight."""

from __future__ import annotations

import random

import numpy as np
import pytest
from torch.utils.data import DataLoader

from trainhub.text.bucketing import LengthGroupedBatchSampler, RandomBatchSampler
from trainhub.text.config import load_experiment_config
from trainhub.text.sampling import MultiTaskLoader
from trainhub.text.trainer import Trainer


def _lengths(n: int = 1000, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 128) for _ in range(n)]


def _epoch(sampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("make", [
    lambda seed: LengthGroupedBatchSampler(_lengths(), 16, seed=seed, pool_batches=8),
    lambda seed: RandomBatchSampler(1000, 16, seed=seed),
])
def test_order_is_a_function_of_seed_and_epoch(make):
    a, b = make(7), make(7)
    assert _epoch(a, 3) == _epoch(b, 3)
    assert _epoch(a, 3) == _epoch(make(7), 3)  # a fresh sampler (a resumed run) replays epoch 3
    assert _epoch(a, 3) != _epoch(a, 4)
    assert _epoch(a, 3) != _epoch(make(8), 3)
    fresh = make(7)
    assert list(fresh) == _epoch(make(7), 0) and list(fresh) == _epoch(make(7), 1)  # no set_epoch: epochs advance


@pytest.mark.parametrize("n, batch, pool", [(1000, 16, 8), (37, 5, 3), (10, 32, 50), (64, 8, 1)])
def test_every_example_exactly_once_per_epoch(n, batch, pool):
    sampler = LengthGroupedBatchSampler(_lengths(n), batch, seed=0, pool_batches=pool)
    for epoch in range(3):
        batches = _epoch(sampler, epoch)
        assert sorted(i for b in batches for i in b) == list(range(n))
        assert len(batches) == len(sampler) == -(-n // batch)
        assert sum(len(b) < batch for b in batches) <= 1  # at most one short batch


def test_batches_hold_similar_lengths():
    lengths = np.array(_lengths(2000))
    grouped = _epoch(LengthGroupedBatchSampler(lengths.tolist(), 16, seed=0, pool_batches=50), 0)
    shuffled = _epoch(RandomBatchSampler(len(lengths), 16, seed=0), 0)

    def spread(batches):  # mean (max - min) length inside a batch
        return float(np.mean([np.ptp(lengths[b]) for b in batches]))

    assert spread(grouped) < 0.1 * spread(shuffled)
    # padding (what the encoder computes in vain) shrinks accordingly
    padded = sum(len(b) * lengths[b].max() for b in grouped)
    assert padded < 1.1 * lengths.sum() < 1.1 * sum(len(b) * lengths[b].max() for b in shuffled)
    # one pool holding every batch is a plain sort: consecutive batches never interleave
    one_pool = _epoch(LengthGroupedBatchSampler(lengths.tolist(), 16, seed=0, pool_batches=1000), 0)
    ranked = sorted(one_pool, key=lambda b: (-lengths[b].max(), -lengths[b].min()))
    flat = np.concatenate([lengths[b] for b in ranked])
    assert (np.diff(flat) <= 0).all()


def test_multitask_loader_forwards_set_epoch_to_task_samplers():
    data = list(range(40))

    def loader():
        samplers = {name: LengthGroupedBatchSampler(_lengths(40, i), 4, seed=i, pool_batches=2)
                    for i, name in enumerate("ab")}
        return MultiTaskLoader({n: DataLoader(data, batch_sampler=s) for n, s in samplers.items()},
                               "proportional", seed=3)

    uninterrupted = loader()
    epochs = []
    for epoch in range(3):
        uninterrupted.sampler.set_epoch(epoch)  # what the training loop does
        epochs.append([(n, b.tolist()) for n, b in uninterrupted])
    resumed = loader()
    resumed.sampler.set_epoch(2)
    assert [(n, b.tolist()) for n, b in resumed] == epochs[2]
    assert epochs[0] != epochs[1]


def test_trainer_groups_by_length_and_logs_tokens_per_second(make_config):
    cfg = load_experiment_config(make_config(num_epochs=1, group_by_length=True, group_by_length_pool=2,
                                             save_strategy="no"))
    trainer = Trainer.from_config(cfg)
    try:
        samplers = [dl.batch_sampler for dl in trainer.train_dataloaders.values()]
        assert all(isinstance(s, LengthGroupedBatchSampler) and s.pool_batches == 2 for s in samplers)
        logs = trainer.train().history[0]
    finally:
        trainer.close()
    assert logs["train_tokens_per_s"] > 0 and 0 <= logs["train_padding"] < 1


@pytest.mark.parametrize("grouped", [False, True])
def test_ranks_share_one_epoch_order_in_equal_parts(grouped):
    lengths = [3 + (i * 7) % 11 for i in range(23)]  # 23 rows, batch 4: 6 batches, the last short

    def make(rank, world):
        if grouped:
            return LengthGroupedBatchSampler(lengths, 4, seed=5, pool_batches=2, rank=rank, world_size=world)
        return RandomBatchSampler(len(lengths), 4, seed=5, rank=rank, world_size=world)

    whole = list(make(0, 1))
    for world in (2, 4):
        parts = [list(make(r, world)) for r in range(world)]
        per_rank = -(-len(whole) // world)
        assert all(len(p) == per_rank == len(make(r, world)) for r, p in enumerate(parts))
        dealt = [b for step in zip(*parts) for b in step]  # step by step, rank by rank
        assert dealt[:len(whole)] == whole and dealt[len(whole):] == whole[:len(dealt) - len(whole)]
