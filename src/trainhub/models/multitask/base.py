"""What every multi-task model tells the task and the loss-weighting strategies.

A multi-task model returns logits ``[B, n_task]``: column ``i`` belongs to task ``i`` and to label
column ``i``. Classification columns are logits (the sigmoid lives in the task); regression columns
are raw predictions. Beyond ``forward`` a model declares, by duck typing (never by class):

* ``supervised_outputs``: indices of the output columns that get a loss (``None``: all). ESMM uses
  it to train only CTR and CTCVR.
* ``shared_parameters()``: parameters shared by the tasks by design (MetaBalance balances their
  gradients).
* ``last_shared_parameters()``: the weights of the last shared layer (GradNorm measures per-task
  gradient norms there).

:class:`MultiTaskRecModel` gives these defaults and helpers; the concrete models fill them in.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from trainhub.nn import MLP
from trainhub.output_kinds import output_kinds

__all__ = ["MultiTaskRecModel", "check_task_types", "last_linear_weight", "tower", "unique_parameters"]

def check_task_types(task_types: Sequence[str]) -> list[str]:
    """Return ``task_types`` as a list, or raise naming the bad entry (the check of
    :func:`trainhub.output_kinds.output_kinds`, shared with the task and the trainer)."""
    output_kinds(task_types)
    return list(task_types)


def unique_parameters(groups: Iterable[Iterable[nn.Parameter]]) -> list[nn.Parameter]:
    """Flatten parameter iterables, keeping the first occurrence of each tensor."""
    seen, out = set(), []
    for group in groups:
        for p in group:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def last_linear_weight(module: nn.Module) -> nn.Parameter:
    """Weight of the last ``nn.Linear`` inside ``module``."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(module).__name__} has no Linear layer; give it at least one hidden dim")
    return linears[-1].weight


def hidden_mlp(input_dim: int, params: dict, what: str) -> MLP:
    """An MLP without output layer (an expert or a bottom); it must have hidden layers."""
    params = dict(params)
    params.pop("output_layer", None)
    if not params.get("dims"):
        raise ValueError(f"{what} needs hidden layers: give {what}={{'dims': [...]}}")
    return MLP(input_dim, output_layer=False, **params)


def tower(input_dim: int, params: dict) -> MLP:
    """A task tower: MLP ending in one logit."""
    params = dict(params)
    params.pop("output_layer", None)
    return MLP(input_dim, output_layer=True, **params)


class MultiTaskRecModel(nn.Module):
    """Base of the multi-task models: defaults for the declarations the task reads.

    Subclasses set ``self.embedding`` and override :meth:`shared_modules` and
    :meth:`last_shared_parameters` when more than the embedding is shared.
    """

    #: Output columns that get a loss; ``None`` means every column.
    supervised_outputs: tuple[int, ...] | None = None

    def shared_modules(self) -> list[nn.Module]:
        """Modules whose parameters every task uses (default: the embedding tables)."""
        return [self.embedding]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters shared by the tasks by design."""
        return unique_parameters(m.parameters() for m in self.shared_modules())

    def task_parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter that is not shared."""
        shared = {id(p) for p in self.shared_parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in shared]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """Weights of the last shared layer (default: the embedding tables)."""
        return list(self.embedding.parameters())

    @staticmethod
    def stack_logits(logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-task ``[B, 1]`` (or ``[B]``) outputs -> ``[B, n_task]``."""
        return torch.cat([t.reshape(-1, 1) for t in logits], dim=1)
