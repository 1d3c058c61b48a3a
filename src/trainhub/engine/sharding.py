"""Shard map-style DataLoaders across the ranks of a process group.

A script written for one process hands the trainers ordinary loaders; under ``torchrun`` the
:class:`~trainhub.engine.runtime.Runtime` rebuilds each one here, keeping the user's batch size,
collate function, workers and shuffle-ness, with a sampler that gives this rank its share:

* **training** (:class:`TrainShardSampler`): one order per epoch shared by every rank (same seed,
  ``set_epoch``), padded by repeating its first rows to a multiple of the world size, then strided
  by rank. Every rank gets the same number of rows, hence the same number of batches (no rank
  waits in an all-reduce the others never reach), and the ranks' ``t``-th batches together are
  ``world_size * B`` consecutive rows of that order: a single process with batch
  ``world_size * B`` and the same seed sees the same rows per step (up to the padding).
* **evaluation** (:class:`BlockShardSampler`): a contiguous block of the rows, no padding, so
  every row is scored exactly once and gathering the blocks in rank order restores row order.

Iterable datasets are left alone: they partition themselves by rank and worker.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
)

__all__ = ["TrainShardSampler", "BlockShardSampler", "shard_loader", "block_bounds"]

log = logging.getLogger(__name__)


def block_bounds(num_rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, end)`` of rank's contiguous block; block sizes differ by at most one row."""
    base, extra = divmod(num_rows, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class TrainShardSampler(torch.utils.data.Sampler):
    """This rank's equal-sized share of one (optionally shuffled) order of ``indices``.

    Args:
        indices: the rows to draw from (e.g. ``range(len(dataset))``).
        rank / world_size: this process and the group size.
        shuffle: a new order per epoch from ``seed + epoch`` (the same on every rank).
        seed: must be equal on every rank.

    ``set_epoch`` fixes the epoch (the loop calls it, so a resume replays the order); without it,
    each pass moves on to the next epoch's order, as :class:`trainhub.data.EpochShuffleSampler` does.
    """

    def __init__(self, indices: Sequence[int], rank: int, world_size: int, shuffle: bool, seed: int = 0):
        self.indices = torch.as_tensor(list(indices), dtype=torch.long)
        self.rank, self.world_size, self.shuffle, self.seed = rank, world_size, shuffle, int(seed)
        self.epoch = 0
        self.num_samples = -(-len(self.indices) // world_size)  # ceil

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        order = self.indices
        if self.shuffle:  # the same formula as EpochShuffleSampler: one process sees the same order
            order = order[torch.randperm(len(order), generator=torch.Generator().manual_seed(self.seed + self.epoch))]
        self.epoch += 1
        total = self.num_samples * self.world_size
        if total > len(order):  # pad with the first rows of the order (repeated if needed)
            repeats = -(-total // max(len(order), 1))
            order = order.repeat(repeats)[:total]
        return iter(order[self.rank:total:self.world_size].tolist())

    def __len__(self) -> int:
        return self.num_samples


class BlockShardSampler(torch.utils.data.Sampler):
    """This rank's contiguous block of ``indices``, each row on exactly one rank (no padding)."""

    def __init__(self, indices: Sequence[int], rank: int, world_size: int):
        indices = list(indices)
        start, end = block_bounds(len(indices), rank, world_size)
        self.indices = indices[start:end]
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _base_order(sampler: Any, num_rows: int) -> tuple[Sequence[int], bool, int | None] | None:
    """``(indices, shuffled, seed or None)`` that the user's sampler draws from; None if unknown."""
    from trainhub.data.dataset import EpochShuffleSampler

    if isinstance(sampler, SequentialSampler):
        return range(num_rows), False, None
    if isinstance(sampler, EpochShuffleSampler):
        return range(sampler.num_rows), True, sampler.seed
    if isinstance(sampler, RandomSampler) and not sampler.replacement and sampler.num_samples == num_rows:
        gen = sampler.generator
        return range(num_rows), True, (gen.initial_seed() if gen is not None else None)
    if isinstance(sampler, SubsetRandomSampler):
        gen = sampler.generator
        return sorted(int(i) for i in sampler.indices), True, (gen.initial_seed() if gen is not None else None)
    if isinstance(sampler, DistributedSampler):
        return range(num_rows), bool(sampler.shuffle), int(sampler.seed)
    return None


def _rebuild(loader: DataLoader, sampler: torch.utils.data.Sampler) -> DataLoader:
    """The same loader (batch size, collate, workers, pinning, ...) drawing from ``sampler``."""
    kwargs: dict[str, Any] = dict(
        batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
        timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
        persistent_workers=loader.persistent_workers,
    )
    if loader.num_workers > 0:
        kwargs["multiprocessing_context"] = loader.multiprocessing_context
        kwargs["prefetch_factor"] = loader.prefetch_factor
    if getattr(loader, "pin_memory_device", ""):
        kwargs["pin_memory_device"] = loader.pin_memory_device
    return DataLoader(loader.dataset, **kwargs)


def shard_loader(loader: Any, rank: int, world_size: int, train: bool,
                 common_seed: Callable[[int | None], int]) -> tuple[Any, bool]:
    """``(loader for this rank, sharded?)``.

    Iterables other than DataLoaders and DataLoaders over iterable datasets are returned as
    given and assumed to yield this rank's share (they partition themselves). ``sharded`` is
    False only for a DataLoader whose sampler cannot be split (a warning says so): every rank
    then reads all of it. ``common_seed(candidate)`` returns one seed agreed by every rank.
    """
    if not isinstance(loader, DataLoader):
        return loader, True
    if isinstance(loader.dataset, IterableDataset):
        return loader, True
    sampler = loader.sampler
    if isinstance(sampler, (TrainShardSampler, BlockShardSampler)):
        return loader, True
    if train and isinstance(sampler, DistributedSampler):
        return loader, True  # the user sharded it already
    base = _base_order(sampler, len(loader.dataset)) if loader.batch_size is not None else None
    if base is None:
        what = type(loader.batch_sampler if loader.batch_size is None else sampler).__name__
        log.warning("cannot shard a DataLoader whose sampler is %s across %d processes: every process reads "
                    "all of it. Pass a sequential or shuffled loader, or shard it yourself", what, world_size)
        return loader, False
    indices, shuffled, seed = base
    if train:
        seed = common_seed(seed) if shuffled else 0
        new_sampler: torch.utils.data.Sampler = TrainShardSampler(indices, rank, world_size, shuffled, seed)
    else:  # order does not change metrics; a contiguous block keeps rows in order for predict()
        new_sampler = BlockShardSampler(sorted(indices) if shuffled else indices, rank, world_size)
    return _rebuild(loader, new_sampler), True
