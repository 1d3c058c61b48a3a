"""Draw a model's computation graph with torchview (extra: ``visualization``), imported only when used.

``trainer.visualization(...)`` has Torch-RecHub's signature. Without ``input_data`` a small random
batch is built from the feature specs the model holds (ids in ``[1, vocab_size)``, dense values in
``(0, 1]``). torchview builds the graph without Graphviz; writing an image (``save_path``) needs
Graphviz's ``dot`` program (``apt-get install graphviz``, ``brew install graphviz``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from trainhub.features import DenseFeature, SequenceFeature, SparseFeature

__all__ = ["visualize_model", "dummy_input"]

_FEATURES = (SparseFeature, SequenceFeature, DenseFeature)


def _torchview():
    try:
        import torchview
    except ImportError as err:
        raise ImportError("visualization needs torchview; install the extra: pip install 'trainhub[visualization]' "
                          "(and Graphviz's dot program to write images)") from err
    return torchview


def _model_features(model: nn.Module) -> list:
    """Feature specs held as attributes by the model or its submodules, unique by name."""
    seen: dict[str, Any] = {}
    for module in model.modules():
        for value in vars(module).values():
            values = value if isinstance(value, (list, tuple)) else [value]
            for f in values:
                if isinstance(f, _FEATURES):
                    seen.setdefault(f.name, f)
    return list(seen.values())


def dummy_input(model: nn.Module, batch_size: int = 2, seq_length: int = 10, device: str | torch.device = "cpu",
                seed: int = 0) -> dict[str, torch.Tensor]:
    """A random batch ``{name: tensor}`` covering every feature the model declares."""
    features = _model_features(model)
    if not features:
        raise ValueError(f"{type(model).__name__} holds no SparseFeature/SequenceFeature/DenseFeature specs to build "
                         "an input from; pass input_data={feature_name: tensor, ...}")
    g = torch.Generator().manual_seed(seed)
    out = {}
    for f in features:
        if isinstance(f, DenseFeature):
            shape = (batch_size,) if f.embed_dim == 1 else (batch_size, f.embed_dim)
            out[f.name] = torch.rand(shape, generator=g) * 0.99 + 0.01
        else:
            shape = (batch_size, seq_length) if isinstance(f, SequenceFeature) else (batch_size,)
            out[f.name] = torch.randint(min(1, f.vocab_size - 1), f.vocab_size, shape, generator=g)
    return {k: v.to(device) for k, v in out.items()}


def visualize_model(model: nn.Module, input_data: Mapping[str, torch.Tensor] | None = None, batch_size: int = 2,
                    seq_length: int = 10, depth: int = 3, show_shapes: bool = True, expand_nested: bool = True,
                    save_path: str | None = None, graph_name: str = "model", device: str = "cpu", dpi: int = 300,
                    **kwargs: Any) -> Any:
    """torchview's ``ComputationGraph`` of ``model`` on ``input_data`` (or a random batch).

    With ``save_path`` (``.png``, ``.svg``, ``.pdf``; no suffix: PDF) the graph is also written
    there at ``dpi``. Without it, the graph is displayed inline in Jupyter and returned; no viewer
    window is opened. Extra keywords go to ``torchview.draw_graph``. The model is left in eval
    mode on ``device``, as in Torch-RecHub.
    """
    torchview = _torchview()
    model.eval()
    model.to(device)
    if input_data is None:
        input_data = dummy_input(model, batch_size, seq_length, device)
    else:
        input_data = {k: v.to(device) for k, v in input_data.items()}
    # A dict given bare would be unpacked into keyword arguments; trainhub models take one dict.
    graph = torchview.draw_graph(model, input_data=(dict(input_data),), graph_name=graph_name, depth=depth,
                                 device=device, expand_nested=expand_nested, show_shapes=show_shapes,
                                 save_graph=False, **kwargs)
    graph.visual_graph.graph_attr["dpi"] = str(dpi)
    if save_path:
        path = Path(save_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = path.suffix.lstrip(".") or "pdf"
        try:
            graph.visual_graph.render(filename=path.stem, directory=str(path.parent), format=fmt, cleanup=True)
        except Exception as err:  # graphviz.ExecutableNotFound when dot is missing
            if type(err).__name__ == "ExecutableNotFound":
                raise RuntimeError(f"writing {save_path} needs Graphviz's dot program on PATH (apt-get install "
                                   "graphviz / brew install graphviz); the graph itself was built") from err
            raise
    elif _in_notebook():
        from IPython.display import display

        display(graph.visual_graph)
    return graph


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
