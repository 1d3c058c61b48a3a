"""trainhub: recommendation and multi-task models on one small PyTorch training engine.

Importing the package is light; submodules load on first use.

Example:
    >>> import trainhub
    >>> trainhub.seed_everything(0)   # before building the model: its initial weights are random
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["seed_everything"]


def __getattr__(name: str) -> Any:
    if name == "seed_everything":  # lazily: importing torch is not free
        from trainhub.engine.runtime import seed_everything

        return seed_everything
    raise AttributeError(f"module 'trainhub' has no attribute {name!r}")
