"""Model registry: ``@register_model`` fills it, ``create_model(name, **kwargs)`` builds from it.

Every registered model carries an ``example`` function that returns constructor kwargs and a
batch for a tiny synthetic input (see :mod:`trainhub.models.toy`); the sweep test builds every
registered model from it, so a model cannot be registered without being tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "get_model_entry", "ModelEntry"]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str  # "ranking" | "matching" | "multitask" | ...
    cls: type[nn.Module]
    example: Callable[[], tuple[dict, dict]]  # () -> (constructor kwargs, batch {name: tensor})


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(family: str, example: Callable[[], tuple[dict, dict]], name: str | None = None):
    """Class decorator: register a model under ``name`` (default: the class name)."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        key = name or cls.__name__
        if key in _REGISTRY and _REGISTRY[key].cls is not cls:
            raise ValueError(f"model name {key!r} is already registered by {_REGISTRY[key].cls.__qualname__}")
        _REGISTRY[key] = ModelEntry(key, family, cls, example)
        return cls

    return wrap


def _load_all() -> None:
    # Importing the model packages runs their decorators.
    import trainhub.models.ranking  # noqa: F401

    for module in ("trainhub.models.matching", "trainhub.models.multitask", "trainhub.models.generative"):
        try:
            __import__(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def list_models(family: str | None = None) -> list[str]:
    """Names of registered models, optionally of one family, sorted."""
    _load_all()
    return sorted(k for k, e in _REGISTRY.items() if family is None or e.family == family)


def get_model_entry(name: str) -> ModelEntry:
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name, e.g. ``create_model("DeepFM", deep_features=..., ...)``."""
    return get_model_entry(name).cls(**kwargs)
