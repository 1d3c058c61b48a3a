"""Torch-RecHub's DataGenerator: build train/val/test loaders from column dicts."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from trainhub.data.dataset import DictDataset, check_batch_size, make_loader

__all__ = ["DataGenerator", "SeqDataset", "SequenceDataGenerator"]

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


class SeqDataset(Dataset):
    """Next-item samples for sequence models (Torch-RecHub's HSTU-style dataset).

    Item ``i`` is ``(seq_tokens[i], seq_positions[i], seq_time_diffs[i], targets[i])`` as int64
    tensors (note the order: time differences before the target).

    Args:
        seq_tokens: ``[N, L]`` token ids.
        seq_positions: ``[N, L]`` positions.
        targets: ``[N]`` next-item ids.
        seq_time_diffs: ``[N, L]`` time differences.
    """

    def __init__(self, seq_tokens: Any, seq_positions: Any, targets: Any, seq_time_diffs: Any):
        super().__init__()
        arrays = {"seq_tokens": seq_tokens, "seq_positions": seq_positions, "seq_time_diffs": seq_time_diffs}
        self.columns = {name: torch.as_tensor(np.asarray(a), dtype=torch.long) for name, a in arrays.items()}
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.long).reshape(-1)
        for name, t in self.columns.items():
            if t.dim() != 2:
                raise ValueError(f"{name} must be 2-D [num_samples, seq_len], got shape {tuple(t.shape)}")
            if len(t) != len(self.targets):
                raise ValueError(f"{name} has {len(t)} rows but targets has {len(self.targets)}")
        lengths = {name: t.shape[1] for name, t in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"sequence columns have different lengths: {lengths}")

    def __getitem__(self, index: int):
        c = self.columns
        return c["seq_tokens"][index], c["seq_positions"][index], c["seq_time_diffs"][index], self.targets[index]

    def __len__(self) -> int:
        return len(self.targets)


class SequenceDataGenerator:
    """Torch-RecHub's loaders over a :class:`SeqDataset`.

    Example:
        >>> (loader,) = SequenceDataGenerator(tokens, positions, targets, time_diffs).generate_dataloader(batch_size=32)
        >>> train_dl, val_dl, test_dl = SequenceDataGenerator(...).generate_dataloader(split_ratio=(0.8, 0.1, 0.1))
    """

    def __init__(self, seq_tokens: Any, seq_positions: Any, targets: Any, seq_time_diffs: Any):
        self.seq_tokens, self.seq_positions = seq_tokens, seq_positions
        self.targets, self.seq_time_diffs = targets, seq_time_diffs
        self.dataset = SeqDataset(seq_tokens, seq_positions, targets, seq_time_diffs)

    def generate_dataloader(self, batch_size: int = 32, num_workers: int = 0,
                            split_ratio: Sequence[float] | None = None, shuffle: bool = True, seed: int = 2022):
        """``(loader,)`` without ``split_ratio``; with ``(train, val, test)`` fractions summing to 1,
        ``(train_loader [shuffled], val_loader, test_loader)`` split with ``seed``."""
        check_batch_size(batch_size)
        if split_ratio is None:
            return (DataLoader(self.dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers),)
        if len(split_ratio) != 3 or abs(sum(split_ratio) - 1.0) > 1e-6:
            raise ValueError(f"split_ratio must be three fractions (train, val, test) summing to 1, got {split_ratio}")
        n = len(self.dataset)
        n_train, n_val = int(n * split_ratio[0]), int(n * split_ratio[1])
        parts = torch.utils.data.random_split(self.dataset, [n_train, n_val, n - n_train - n_val],
                                              generator=torch.Generator().manual_seed(seed))
        return tuple(DataLoader(part, batch_size=batch_size, shuffle=i == 0, num_workers=num_workers)
                     for i, part in enumerate(parts))
