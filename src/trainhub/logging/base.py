"""The logger interface and the fan-out that lets several loggers run together."""

from __future__ import annotations

import logging
from typing import Any, Iterable, Protocol, runtime_checkable

from trainhub.engine.keys import LOOP_KEYS, KeyStyle

__all__ = ["MetricLogger", "MultiLogger", "flatten_params"]

log = logging.getLogger(__name__)


@runtime_checkable
class MetricLogger(Protocol):
    """Anything with these methods can log for the engine."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_params(self, params: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and other values become strings."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, prefix=f"{name}."))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat[name] = value
        else:
            flat[name] = repr(value) if callable(value) else str(value)
    return flat


class MultiLogger:
    """Sends every call to each logger that supports it.

    Also accepts Torch-RecHub-style ``model_logger`` objects (``log_hyperparams`` and ``finish``
    instead of ``log_params`` and ``close``).

    Args:
        key_style: how metric keys are written (:class:`trainhub.engine.keys.KeyStyle`); the
            default keeps the loop's ``train/`` and ``val/`` prefixes.
    """

    def __init__(self, loggers: Iterable[Any] = (), key_style: KeyStyle = LOOP_KEYS):
        self.loggers = list(loggers)
        self.key_style = key_style
        self._closed = False

    def _call(self, names: tuple[str, ...], *args: Any) -> None:
        for logger in self.loggers:
            for name in names:
                method = getattr(logger, name, None)
                if method is not None:
                    method(*args)
                    break

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._call(("log_metrics",), self.key_style.apply(metrics), step)

    def log_params(self, params: dict[str, Any]) -> None:
        self._call(("log_params", "log_hyperparams"), params)

    def log_artifact(self, path: str) -> None:
        self._call(("log_artifact",), path)

    def stale_files(self) -> list[Any]:
        """Files of an earlier run that the loggers found in their folders when they opened."""
        return [f for lg in self.loggers if callable(getattr(lg, "stale_files", None)) for f in lg.stale_files()]

    def _keyed(self) -> dict[str, Any]:
        return {f"{i}:{type(lg).__name__}": lg for i, lg in enumerate(self.loggers)
                if callable(getattr(lg, "state_dict", None)) and callable(getattr(lg, "load_state_dict", None))}

    def state_dict(self) -> dict[str, Any]:
        """What each logger needs to continue a resumed run (e.g. how much of a CSV file is valid)."""
        return {key: lg.state_dict() for key, lg in self._keyed().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, lg in self._keyed().items():
            if key in state:
                lg.load_state_dict(state[key])

    def close(self) -> None:
        """Close every logger once; safe to call again."""
        if self._closed:
            return
        self._closed = True
        for logger in self.loggers:
            for name in ("close", "finish"):
                method = getattr(logger, name, None)
                if method is not None:
                    try:
                        method()
                    except Exception:  # one failing backend must not keep the others open
                        log.exception("closing logger %r failed", logger)
                    break
