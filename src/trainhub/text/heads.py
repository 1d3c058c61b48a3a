"""Task heads: one module per task, holding one output layer per configured head.

Each task's heads read the shared encoder's outputs and return ``{"loss", "logits": {head: tensor}}``
(upstream's contract, kept for every type, including regression). Upstream called these modules
"tasks" (``BaseTask``, ``NERTask``, ``TASK_REGISTRY``); those names live on at the
``multitask_bert.tasks`` paths. Heads return logits; the
losses are the stable with-logits forms. The task loss is ``sum(head.weight * head_loss)``.

Logit shapes: classification ``[B, C]``, multi-label ``[B, L]``, regression ``[B, L]``, NER
``[B, T, C]``.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from trainhub.text.config import TaskConfig
from trainhub.text.kinds import KINDS, TYPE_ALIASES, kind_for

__all__ = [
    "TaskHeads",
    "SingleLabelClassificationHeads",
    "MultiLabelClassificationHeads",
    "NERHead",
    "RegressionHeads",
    "HEAD_REGISTRY",
    "heads_for",
    "pool",
]

IGNORE_INDEX = -100
Labels = torch.Tensor | Mapping[str, torch.Tensor] | None


def pool(encoder_outputs: Any, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """Sentence vector ``[B, H]`` from encoder outputs: masked mean, CLS, or the pooler output."""
    states = encoder_outputs.last_hidden_state  # [B, T, H]
    if mode == "pooler":
        pooled = getattr(encoder_outputs, "pooler_output", None)
        return pooled if pooled is not None else states[:, 0]  # DistilBERT-like encoders have no pooler
    if mode == "cls" or attention_mask is None:
        return states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(states.dtype)  # [B, T, 1]
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def _init_linear(layer: nn.Linear) -> nn.Linear:
    # BERT-style init, so a fresh head starts near uniform predictions.
    nn.init.normal_(layer.weight, std=0.02)
    nn.init.zeros_(layer.bias)
    return layer


class TaskHeads(nn.Module):
    """Shared body of a task's heads. Subclasses build ``self.heads`` and define ``head_logits`` / ``head_loss``.

    Args:
        config: the task config (heads must have ``num_labels`` set).
        hidden_size: encoder hidden size.
        dropout: dropout before each head.
        pooling: ``"mean"``, ``"cls"`` or ``"pooler"`` (sequence-level tasks).
    """

    def __init__(self, config: TaskConfig, hidden_size: int, dropout: float = 0.1, pooling: str = "mean"):
        super().__init__()
        self.name = config.name
        self.task_type = config.type
        self.pooling = pooling
        self.head_weights = {h.name: float(h.weight) for h in config.heads}
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict()
        for head in config.heads:
            if not head.num_labels:
                raise ValueError(f"task {config.name!r} head {head.name!r} has no num_labels; "
                                 "set it or let DataProcessor discover it")
            self.heads[head.name] = self.build_head(hidden_size, head.num_labels, dropout)

    def build_head(self, hidden_size: int, num_labels: int, dropout: float) -> nn.Module:
        return _init_linear(nn.Linear(hidden_size, num_labels))

    def features(self, encoder_outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return self.dropout(pool(encoder_outputs, attention_mask, self.pooling))

    def head_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_forward_output(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                           token_type_ids: torch.Tensor | None, labels: Labels, encoder_outputs: Any,
                           **kwargs: Any) -> dict[str, Any]:
        """Logits per head and, when labels are given, the weighted loss (0 otherwise)."""
        feats = self.features(encoder_outputs, attention_mask)
        logits = {name: head(feats) for name, head in self.heads.items()}
        loss = feats.new_zeros(())
        if labels is not None:
            if isinstance(labels, torch.Tensor):
                if len(self.heads) != 1:
                    raise ValueError(f"task {self.name!r} has {len(self.heads)} heads; pass labels as {{head: tensor}}")
                labels = {next(iter(self.heads)): labels}
            for name, target in labels.items():
                if name not in logits:
                    raise KeyError(f"labels for unknown head {name!r} of task {self.name!r}; heads: {list(self.heads)}")
                loss = loss + self.head_weights[name] * self.head_loss(logits[name], target)
        return {"loss": loss, "logits": logits}

    def forward(self, encoder_outputs: Any, attention_mask: torch.Tensor | None = None,
                labels: Labels = None) -> dict[str, Any]:
        return self.get_forward_output(None, attention_mask, None, labels, encoder_outputs)


class SingleLabelClassificationHeads(TaskHeads):
    """One or more softmax heads on the pooled sentence vector; cross-entropy (-100 ignored)."""

    def head_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        if not self.training and not bool((target != IGNORE_INDEX).any()):
            return logits.sum() * 0.0  # an eval batch with no scorable row (labels the head lacks)
        return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)


class MultiLabelClassificationHeads(TaskHeads):
    """Independent sigmoid outputs per label; ``BCEWithLogits``."""

    def head_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


class RegressionHeads(TaskHeads):
    """Linear outputs on the pooled vector; mean squared error."""

    def head_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(logits, target.to(logits.dtype).reshape(logits.shape))


class NERHead(TaskHeads):
    """Token classification on every token state (``Dropout`` + ``Linear``, as upstream).

    The loss averages over labelled positions only (first sub-tokens); a batch with none gives 0.
    """

    def build_head(self, hidden_size: int, num_labels: int, dropout: float) -> nn.Module:
        return nn.Sequential(nn.Dropout(dropout), _init_linear(nn.Linear(hidden_size, num_labels)))

    def features(self, encoder_outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return encoder_outputs.last_hidden_state  # [B, T, H]; the head applies dropout

    def head_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1).long(),
                               ignore_index=IGNORE_INDEX, reduction="sum")
        count = (target != IGNORE_INDEX).sum().clamp(min=1)
        return flat / count


def heads_for(task_type: str) -> type:
    """The heads class of a task type (canonical or alias): the one its kind names."""
    heads = kind_for(task_type).heads
    return globals()[heads] if isinstance(heads, str) else heads


class _HeadRegistry(Mapping):
    """task type (canonical or alias) -> heads class, read from the kinds (registered ones too)."""

    def __getitem__(self, task_type: str) -> type:
        try:
            return heads_for(task_type)
        except ValueError as err:
            raise KeyError(task_type) from err

    def __iter__(self) -> Iterator[str]:
        return iter([*KINDS, *TYPE_ALIASES])

    def __len__(self) -> int:
        return len(KINDS) + len(TYPE_ALIASES)


#: task type (canonical or alias) -> the heads module of that kind of task
HEAD_REGISTRY: Mapping[str, type] = _HeadRegistry()
