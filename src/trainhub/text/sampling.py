"""Multi-task batch schedules: a loader that yields ``(task_name, batch)`` from per-task loaders.

* ``round_robin`` (default, upstream's order): one batch from each task in config order; an
  exhausted task drops out and the others continue, so every batch is seen once per epoch.
* ``proportional``: the same batches, in a random order where each step picks a task with
  probability proportional to its remaining batches (big tasks spread over the whole epoch).
* ``temperature``: ``p_task ~ n_task ** (1 / T)`` (T=1 proportional, large T uniform); an epoch is
  the total number of batches, and a task whose loader runs out restarts it, so small tasks are
  up-sampled.

The training loop sees one ordinary iterable; ``len()`` is the number of batches per epoch. The
loop's per-epoch hook (``loader.sampler.set_epoch(epoch)``) reaches the task draws and every task
loader's batch sampler, so each epoch's order depends only on the seed and the epoch number.
"""

from __future__ import annotations

import random
from typing import Any, Iterator, Mapping

__all__ = ["MultiTaskLoader", "SequentialTaskLoader", "SAMPLING_STRATEGIES"]

SAMPLING_STRATEGIES = ("round_robin", "proportional", "temperature")


class MultiTaskLoader:
    """Interleave per-task loaders.

    Args:
        loaders: ``{task_name: DataLoader}`` in task order.
        strategy: ``"round_robin"``, ``"proportional"`` or ``"temperature"``.
        temperature: for ``"temperature"``.
        seed: seeds the task draws (each epoch draws a new, reproducible order).

    Example:
        >>> for task_name, batch in MultiTaskLoader({"a": dl_a, "b": dl_b}):
        ...     ...
    """

    def __init__(self, loaders: Mapping[str, Any], strategy: str = "round_robin", temperature: float = 2.0,
                 seed: int = 0):
        if strategy not in SAMPLING_STRATEGIES:
            raise ValueError(f"unknown task_sampling {strategy!r}; choose from {', '.join(SAMPLING_STRATEGIES)}")
        self.loaders = {name: dl for name, dl in loaders.items() if len(dl) > 0}
        self.strategy = strategy
        self.temperature = float(temperature)
        self.seed = seed
        self._epoch = 0

    def __len__(self) -> int:
        return sum(len(dl) for dl in self.loaders.values())

    @property
    def sampler(self) -> "MultiTaskLoader":
        """The object the training loop calls ``set_epoch`` on (this loader itself)."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Make the coming pass epoch ``epoch``: task draws and each task's batch order."""
        self._epoch = int(epoch)
        for dl in self.loaders.values():
            for sampler in (getattr(dl, "batch_sampler", None), getattr(dl, "sampler", None)):
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Task-sampling state for ``last.ckpt``: the draws of an epoch depend on these alone."""
        return {"strategy": self.strategy, "temperature": self.temperature, "seed": self.seed, "epoch": self._epoch,
                "batches": {name: len(dl) for name, dl in self.loaders.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; a checkpoint of another sampling setup is an error, as
        the resumed run would silently see other batches than the run it continues."""
        mine = self.state_dict()
        differ = {k: (state.get(k), mine[k]) for k in ("strategy", "temperature", "seed", "batches")
                  if state.get(k) != mine[k]}
        if differ:
            detail = "; ".join(f"{k}: checkpoint {a!r}, this run {b!r}" for k, (a, b) in differ.items())
            raise ValueError(f"the checkpoint's task sampling differs from this run's ({detail})")
        self.set_epoch(int(state["epoch"]))

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        rng = random.Random(self.seed + self._epoch)
        self._epoch += 1
        if self.strategy == "round_robin":
            return self._round_robin()
        if self.strategy == "proportional":
            return self._proportional(rng)
        return self._temperature(rng)

    def _round_robin(self) -> Iterator[tuple[str, Any]]:
        iterators = {name: iter(dl) for name, dl in self.loaders.items()}
        while iterators:
            for name in list(iterators):
                try:
                    batch = next(iterators[name])
                except StopIteration:
                    del iterators[name]
                    continue
                yield name, batch

    def _proportional(self, rng: random.Random) -> Iterator[tuple[str, Any]]:
        iterators = {name: iter(dl) for name, dl in self.loaders.items()}
        remaining = {name: len(dl) for name, dl in self.loaders.items()}
        while remaining:
            names = list(remaining)
            name = rng.choices(names, weights=[remaining[n] for n in names])[0]
            try:
                batch = next(iterators[name])
            except StopIteration:  # a loader shorter than its len(): drop it
                del remaining[name]
                continue
            remaining[name] -= 1
            if remaining[name] == 0:
                del remaining[name]
            yield name, batch

    def task_probabilities(self) -> dict[str, float]:
        """Per-task draw probabilities of the ``temperature`` strategy."""
        weights = {n: len(dl) ** (1.0 / self.temperature) for n, dl in self.loaders.items()}
        total = sum(weights.values())
        return {n: w / total for n, w in weights.items()}

    def _temperature(self, rng: random.Random) -> Iterator[tuple[str, Any]]:
        probs = self.task_probabilities()
        names: list[str] = list(probs)
        iterators = {name: iter(dl) for name, dl in self.loaders.items()}
        for _ in range(len(self)):
            name = rng.choices(names, weights=[probs[n] for n in names])[0]
            try:
                batch = next(iterators[name])
            except StopIteration:
                iterators[name] = iter(self.loaders[name])
                batch = next(iterators[name])
            yield name, batch


class SequentialTaskLoader:
    """Every batch of every task, task after task (for evaluation)."""

    def __init__(self, loaders: Mapping[str, Any]):
        self.loaders = dict(loaders)

    def __len__(self) -> int:
        return sum(len(dl) for dl in self.loaders.values())

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        for name, dl in self.loaders.items():
            for batch in dl:
                yield name, batch
