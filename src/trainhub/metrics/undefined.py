"""Why a metric came out NaN: metrics report the reason, the training loop turns it into one warning.

A metric that cannot be computed on the data it was given (AUC of labels with one class, any
metric of an empty set) returns NaN and calls :func:`report_undefined` with the reason, including
the class counts. Inside :func:`collect_undefined` (the loop wraps validation in it) the reasons
are collected so the loop can warn once per run, naming the set, the metric and what the trainer
does about it; anywhere else the reason is logged as a warning right away.
"""

from __future__ import annotations

import contextlib
import logging
from contextvars import ContextVar
from typing import Iterator

__all__ = ["report_undefined", "collect_undefined"]

log = logging.getLogger(__name__)

_SINK: ContextVar[list[str] | None] = ContextVar("trainhub_undefined_metrics", default=None)


def report_undefined(reason: str) -> None:
    """Record (or, outside :func:`collect_undefined`, log) why a metric is NaN."""
    sink = _SINK.get()
    if sink is None:
        log.warning("%s; returning NaN", reason)
    elif reason not in sink:
        sink.append(reason)


@contextlib.contextmanager
def collect_undefined() -> Iterator[list[str]]:
    """Collect the reasons reported inside the block (in order, without repeats)."""
    reasons: list[str] = []
    token = _SINK.set(reasons)
    try:
        yield reasons
    finally:
        _SINK.reset(token)
