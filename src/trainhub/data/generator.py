"""Torch-RecHub's DataGenerator: build train/val/test loaders from column dicts."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import torch

from trainhub.data.dataset import DictDataset, make_loader

__all__ = ["DataGenerator"]

log = logging.getLogger(__name__)


class DataGenerator:
    """Hold ``x = {column: array}`` and labels ``y``; build DataLoaders.

    Example:
        >>> dg = DataGenerator(x, y)
        >>> train_dl, val_dl, test_dl = dg.generate_dataloader(split_ratio=[0.7, 0.1], batch_size=256)
    """

    def __init__(self, x: Mapping[str, Any], y: Any):
        self.dataset = DictDataset(x, y)

    def generate_dataloader(
        self,
        x_val: Mapping[str, Any] | None = None,
        y_val: Any = None,
        x_test: Mapping[str, Any] | None = None,
        y_test: Any = None,
        split_ratio: Sequence[float] | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 2022,
    ):
        """Return ``(train_loader, val_loader, test_loader)``.

        With ``split_ratio=[a, b]`` the data is shuffled with ``seed`` and split into the first
        ``int(N*a)`` rows (train), the next ``int(N*b)`` (validation) and the rest (test).
        Otherwise the given validation/test columns are used (a loader is None when its data is
        not given). The training loader shuffles; the others keep row order.
        """
        if split_ratio is not None:
            if len(split_ratio) != 2 or min(split_ratio) < 0 or sum(split_ratio) > 1:
                raise ValueError(f"split_ratio must be [train, val] fractions summing to <= 1, got {split_ratio}")
            n = len(self.dataset)
            n_train, n_val = int(n * split_ratio[0]), int(n * split_ratio[1])
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            train = self.dataset.subset(perm[:n_train])
            val = self.dataset.subset(perm[n_train:n_train + n_val])
            test = self.dataset.subset(perm[n_train + n_val:])
            log.info("split %d rows into train : val : test = %d : %d : %d", n, len(train), len(val), len(test))
        else:
            train = self.dataset
            val = DictDataset(x_val, y_val) if x_val is not None else None
            test = DictDataset(x_test, y_test) if x_test is not None else None
        train_dl = make_loader(train, batch_size, shuffle=True, num_workers=num_workers, seed=seed)
        val_dl = make_loader(val, batch_size, num_workers=num_workers) if val is not None and len(val) else None
        test_dl = make_loader(test, batch_size, num_workers=num_workers) if test is not None and len(test) else None
        return train_dl, val_dl, test_dl
