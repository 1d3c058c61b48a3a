"""RQ-VAE training: reconstruction + quantization loss; validation reports how distinct the
semantic IDs are.

Batches are item embeddings ``[B, in_dim]`` (what a loader over :class:`trainhub.data.EmbDataset`
yields; a ``(x,)`` tuple from a ``TensorDataset`` works too). The model is an
:class:`~trainhub.models.generative.rqvae.RQVAEModel` or anything with its
``forward(x, use_sk) -> (recon, rq_loss, indices)`` and ``compute_loss(recon, rq_loss, xs=x)``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from trainhub.engine.runtime import unwrap_model
from trainhub.engine.task import StepOutput
from trainhub.models.generative.quantizer import codebook_stats

__all__ = ["RQVAETask"]

# direction of every metric this task reports (the per-level ones are higher-is-better)
_LOWER_IS_BETTER = {"collision_rate", "loss", "recon_loss", "quant_loss"}


def _embeddings(batch: Any) -> torch.Tensor:
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.dim() != 2:
        raise TypeError("RQ-VAE batches are item embeddings [B, in_dim] (e.g. a DataLoader over EmbDataset), got "
                        f"{type(batch).__name__}{tuple(batch.shape) if isinstance(batch, torch.Tensor) else ''}")
    return batch.float()


class RQVAETask:
    """Train an RQ-VAE; validate the distinctness of its semantic IDs.

    Training: ``loss = recon + quant_loss_weight * rq_loss`` from the model's ``compute_loss``,
    with the model's Sinkhorn assignment (``use_sk=True``, as upstream's trainer); ``recon_loss``
    and ``quant_loss`` are logged as parts.

    Validation (nearest codes, as upstream's ``get_indices``): ``collision_rate`` (share of items
    whose semantic ID another item already has; lower is better, upstream's evaluation metric),
    ``loss``, ``recon_loss``, ``quant_loss``, and with ``codebook_sizes`` each level's
    ``usage_<i>`` (fraction of codes used) and ``perplexity_<i>``.

    Args:
        codebook_sizes: the model's ``num_emb_list`` (enables the per-level metrics).

    Example:
        >>> fit(model, RQVAETask(model.num_emb_list), optimizer, loader, loader,
        ...     stopper=EarlyStopping("collision_rate", "min", patience=10))
    """

    def __init__(self, codebook_sizes: Sequence[int] | None = None):
        self.codebook_sizes = list(codebook_sizes or [])
        self.reset()

    def reset(self) -> None:
        self._codes: list[torch.Tensor] = []
        self._sums = {"loss": 0.0, "recon_loss": 0.0, "quant_loss": 0.0}
        self._rows = 0

    def _losses(self, model: nn.Module, x: torch.Tensor, use_sk: bool):
        recon, rq_loss, indices = model(x, use_sk=use_sk)
        loss, recon_loss = unwrap_model(model).compute_loss(recon, rq_loss, xs=x)
        return loss, recon_loss, rq_loss, indices

    def training_step(self, model: nn.Module, batch: Any) -> StepOutput:
        x = _embeddings(batch)
        loss, recon_loss, rq_loss, _ = self._losses(model, x, use_sk=True)
        return StepOutput(loss, {"recon_loss": recon_loss, "quant_loss": rq_loss}, batch_size=len(x))

    @torch.no_grad()
    def validation_step(self, model: nn.Module, batch: Any) -> None:
        x = _embeddings(batch)
        loss, recon_loss, rq_loss, indices = self._losses(model, x, use_sk=False)
        n = len(x)
        for name, value in (("loss", loss), ("recon_loss", recon_loss), ("quant_loss", rq_loss)):
            self._sums[name] += float(value) * n
        self._rows += n
        self._codes.append(indices.reshape(n, -1).cpu())

    def sync_metrics(self, gather: Callable[[Any], list[Any]]) -> None:
        """Collisions are global: every rank's codes are pooled before counting."""
        parts = gather((self._codes, self._sums, self._rows))
        self._codes = [c for p in parts for c in p[0]]
        self._sums = {k: sum(p[1][k] for p in parts) for k in self._sums}
        self._rows = sum(p[2] for p in parts)

    def metric_names(self) -> list[str]:
        per_level = [f"{m}_{i}" for i in range(len(self.codebook_sizes)) for m in ("usage", "perplexity")]
        return ["collision_rate", "loss", "recon_loss", "quant_loss", *per_level]

    def higher_is_better(self, name: str) -> bool | None:
        if name not in self.metric_names():
            return None
        return name not in _LOWER_IS_BETTER

    def compute_metrics(self) -> dict[str, float]:
        if not self._rows:
            self.reset()
            return {name: float("nan") for name in self.metric_names()}
        codes = torch.cat(self._codes)
        stats = codebook_stats(codes, self.codebook_sizes)
        metrics = {"collision_rate": stats["collision_rate"],
                   **{k: v / self._rows for k, v in self._sums.items()}}
        metrics.update({k: stats[k] for k in self.metric_names() if k.startswith(("usage_", "perplexity_"))})
        self.reset()
        return metrics
