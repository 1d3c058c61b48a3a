"""Training batch orders for text: random, or length-grouped so that batches carry less padding.

Both are batch samplers whose order is a function of ``(seed, epoch)`` only. The training loop
calls ``set_epoch`` (through :class:`~trainhub.text.sampling.MultiTaskLoader`), so a resumed run
replays exactly the batches an uninterrupted run would have seen.

Length grouping (``training.group_by_length``): shuffle the examples, cut them into pools of
``pool_batches`` batches, sort each pool by token length, cut it into batches, then shuffle the
batches. Every batch holds examples of similar length (little padding, so fewer tokens to push
through the encoder) while the epoch still mixes short and long batches in a random order.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

__all__ = ["LengthGroupedBatchSampler", "RandomBatchSampler"]


class _EpochBatchSampler(torch.utils.data.Sampler):
    """Under several processes (``world_size > 1``) every rank draws the same epoch order and
    takes every ``world_size``-th batch from ``rank`` on; the order is padded by repeating its
    first batches so that every rank gets ``ceil(batches / world_size)`` (the convention of
    ``DistributedSampler``)."""

    def __init__(self, num_rows: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.num_rows = int(num_rows)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def _num_batches(self) -> int:
        return -(-self.num_rows // self.batch_size)

    def __len__(self) -> int:
        return -(-self._num_batches() // self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        self.epoch += 1  # without set_epoch, successive passes still differ (and stay reproducible)
        if self.world_size > 1 and batches:
            per_rank = -(-len(batches) // self.world_size)
            padded = (batches * self.world_size)[:per_rank * self.world_size]
            batches = padded[self.rank::self.world_size]
        return iter(batches)

    def batches(self) -> list[list[int]]:
        raise NotImplementedError


class RandomBatchSampler(_EpochBatchSampler):
    """Shuffled batches of ``batch_size`` (the last one may be smaller).

    Args:
        num_rows: dataset size.
        batch_size: rows per batch.
        seed: with the epoch, decides the order.
    """

    def batches(self) -> list[list[int]]:
        order = self._rng().permutation(self.num_rows).tolist()
        return [order[i:i + self.batch_size] for i in range(0, self.num_rows, self.batch_size)]


class LengthGroupedBatchSampler(_EpochBatchSampler):
    """Batches of similar length, in a random order.

    Args:
        lengths: token length of each example.
        batch_size: rows per batch.
        seed: with the epoch, decides the order.
        pool_batches: how many batches' worth of examples are sorted together; larger pools give
            tighter batches but a less random composition. Every pool but the last holds a whole
            number of batches, so at most one batch per epoch is short.

    Example:
        >>> sampler = LengthGroupedBatchSampler([len(r["input_ids"]) for r in dataset], 32, seed=42)
        >>> loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, pool_batches: int = 50,
                 rank: int = 0, world_size: int = 1):
        super().__init__(len(lengths), batch_size, seed, rank, world_size)
        if pool_batches < 1:
            raise ValueError(f"pool_batches must be >= 1, got {pool_batches}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.pool_batches = int(pool_batches)

    def batches(self) -> list[list[int]]:
        rng = self._rng()
        order = rng.permutation(self.num_rows)
        pool = self.pool_batches * self.batch_size
        batches: list[list[int]] = []
        for start in range(0, self.num_rows, pool):
            chunk = order[start:start + pool]
            # longest first; the stable sort keeps ties in their shuffled order
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")].tolist()
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]
