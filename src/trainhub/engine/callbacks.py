"""Callbacks: duck-typed objects whose methods, when present, the loop calls at a few points.

Events: ``on_fit_start(state)``, ``on_epoch_start(state)``, ``on_train_batch_end(state, out)``,
``on_validation_end(state, metrics)``, ``on_epoch_end(state, logs)``, ``on_fit_end(state)``.
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["fire"]


def fire(callbacks: Iterable[Any], event: str, *args: Any) -> None:
    """Call ``event`` on every callback that defines it."""
    for cb in callbacks:
        handler = getattr(cb, event, None)
        if handler is not None:
            handler(*args)
