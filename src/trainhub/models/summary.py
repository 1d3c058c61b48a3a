"""What a model is made of, as flat loggable values: parameter counts, embedding tables, MLP widths.

Example:
    >>> model_summary(DeepFM(deep_features=dense + sparse, fm_features=sparse, mlp_params={"dims": [64, 32]}))
    {'num_parameters': 48321, 'num_trainable_parameters': 48321, 'embedding.C1.rows': 120, 'embedding.C1.dim': 16,
     ..., 'mlp.mlp.dims': '64,32,1'}
"""

from __future__ import annotations

from typing import Any

from torch import nn

from trainhub.engine.runtime import unwrap_model

__all__ = ["model_summary", "count_parameters"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in unwrap_model(model).parameters() if p.requires_grad or not trainable_only)


def model_summary(model: nn.Module) -> dict[str, Any]:
    """``num_parameters``, ``embedding.<table>.rows/dim`` for every embedding table, and
    ``mlp.<module path>.dims`` (comma-separated layer widths) for every MLP."""
    from trainhub.nn import MLP, EmbeddingCollection

    model = unwrap_model(model)
    out: dict[str, Any] = {"num_parameters": count_parameters(model),
                           "num_trainable_parameters": count_parameters(model, trainable_only=True)}
    for path, module in model.named_modules():
        if isinstance(module, EmbeddingCollection):
            for name, view in module.tables.items():
                out[f"embedding.{name}.rows"] = int(view.num_embeddings)
                out[f"embedding.{name}.dim"] = int(view.embedding_dim)
        elif isinstance(module, MLP):
            widths = [m.out_features for m in module.mlp if isinstance(m, nn.Linear)]
            out[f"mlp.{path or 'model'}.dims"] = ",".join(map(str, widths))
    return out
