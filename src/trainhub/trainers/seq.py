"""SeqTrainer with Torch-RecHub's constructor and methods, on the shared engine (generative next-item)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainhub.engine import unwrap_model
from trainhub.engine.keys import TRAIN, VAL
from trainhub.tasks.seq import DEFAULT_KS, PAD, NextItemTask, default_monitor, next_tokens, sequence_logits
from trainhub.trainers.base import RecTrainer

__all__ = ["SeqTrainer"]

log = logging.getLogger(__name__)


class SeqTrainer(RecTrainer):
    """Train a next-item (generative) model such as HSTU on ``(seq_tokens, seq_positions,
    seq_time_diffs, targets)`` batches, early-stopped on exact full-ranking NDCG@10.

    Args:
        model: ``model(seq_tokens [B, L], time_diffs [B, L]) -> logits [B, L, V]`` (column 0 = PAD);
            models that also have ``encode`` / ``score`` are scored only where needed.
        optimizer_fn / optimizer_params / scheduler_fn / scheduler_params / n_epoch /
            earlystop_patience / device / gpus / model_path / model_logger: as
            :class:`trainhub.trainers.CTRTrainer` (``optimizer_params`` default
            ``{"lr": 1e-3, "weight_decay": 1e-5}``).
        loss_type: ``"cross_entropy"`` (full softmax), ``"nce"`` (upstream's temperature-scaled
            softmax cross-entropy, temperature 0.1) or ``"sampled_softmax"`` (shared uniform and
            in-batch negatives with logQ correction; for large vocabularies).
        loss_params: options of the loss, see :func:`trainhub.tasks.seq.build_seq_loss`.
        ks: cut-offs of the validation metrics ``hr@K``, ``ndcg@K``, ``mrr@K`` (default 10, 50, 200).
        exclude_history: rank the target against the items not in the sample's history (the
            SASRec/HSTU public protocol; the target itself always competes).
        val_loss_positions: ``"all"`` (upstream) or ``"last"``; default ``"last"`` for sampled softmax.
        earlystop_monitor: default ``"ndcg@10"`` (higher is better); any metric the task reports
            (``loss``, ``top1_accuracy``, ``hr@K``, ``ndcg@K``, ``mrr@K``) with its own direction.
        **kwargs: engine options, see :class:`trainhub.trainers.base.RecTrainer` (seed, resume,
            loggers, max_grad_norm, precision, sparse_embeddings, ...).

    Unlike Torch-RecHub, which keeps the last epoch's weights unless early stopping fires, the
    best validation weights are kept and saved to ``model.pth``.

    Example:
        >>> data = interaction_sequences(log_df, max_seq_len=50)
        >>> train_dl, val_dl, test_dl = data.dataloaders(batch_size=128)
        >>> trainer = SeqTrainer(HSTUModel(vocab_size=data.vocab_size, max_seq_len=50), n_epoch=20)
        >>> history = trainer.fit(train_dl, val_dl)
        >>> trainer.evaluate_all(trainer.model, test_dl)["ndcg@10"]
        >>> trainer.predict(trainer.model, test_dl, k=10)        # [N, 10] next-item tokens
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer_fn=torch.optim.Adam,
        optimizer_params: dict | None = None,
        scheduler_fn=None,
        scheduler_params: dict | None = None,
        n_epoch: int = 10,
        earlystop_patience: int = 10,
        device: str = "cpu",
        gpus: Sequence[int] | None = None,
        model_path: str = "./",
        loss_type: str = "cross_entropy",
        loss_params: dict | None = None,
        model_logger: Any = None,
        *,
        ks: Sequence[int] = DEFAULT_KS,
        exclude_history: bool = True,
        val_loss_positions: str | None = None,
        earlystop_monitor: str | None = None,
        **kwargs: Any,
    ):
        self.loss_type = loss_type
        self.task = NextItemTask(loss_type, loss_params, ks=ks, exclude_history=exclude_history,
                                 val_loss_positions=val_loss_positions)
        self.loss_fn = self.task.loss  # upstream's attribute: callable on (logits [N, V], labels [N])
        super().__init__(model, optimizer_fn, optimizer_params, scheduler_fn, scheduler_params, n_epoch,
                         earlystop_patience, device, gpus, model_path, model_logger,
                         earlystop_monitor=earlystop_monitor or default_monitor(ks), **kwargs)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "loss_type": self.loss_type, "ks": list(self.task.metrics.ks),
                "exclude_history": self.task.exclude_history}

    # -- Torch-RecHub API ---------------------------------------------------------------------------
    def fit(self, train_dataloader: Iterable, val_dataloader: Iterable | None = None) -> dict[str, list[float]]:
        """Train for ``n_epoch`` epochs, early-stopped on the monitor; keep and save the best weights.

        Returns upstream's history ``{"train_loss": [...], "val_loss": [...], "val_accuracy": [...]}``
        (``val_accuracy`` is ``top1_accuracy``) plus ``val_<metric>`` for every other validation
        metric; the engine's :class:`~trainhub.engine.FitResult` is ``self.fit_result``.
        """
        result = super().fit(train_dataloader, val_dataloader)
        history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
        for epoch in result.history:
            history["train_loss"].append(epoch[f"{TRAIN}loss"])
            for key, value in epoch.items():
                if not key.startswith(VAL):
                    continue
                name = key[len(VAL):]
                name = {"loss": "val_loss", "top1_accuracy": "val_accuracy"}.get(name, f"val_{name}")
                history.setdefault(name, []).append(value)
        return history

    def _compute_next_token_loss(self, logits: torch.Tensor, seq_tokens: torch.Tensor,
                                 targets: torch.Tensor) -> torch.Tensor:
        """Upstream's next-token loss of full logits ``[B, L, V]``: position ``i`` predicts token
        ``i + 1``, the last one ``targets``; positions whose current token is PAD take no loss."""
        return self.loss_fn(logits, next_tokens(seq_tokens.long(), targets.long()))

    def evaluate(self, model_or_loader: Any, data_loader: Iterable | None = None) -> tuple[float, float]:
        """Upstream's ``(loss, top1_accuracy)``: ``evaluate(loader)`` as Torch-RecHub, or
        ``evaluate(model, loader)`` as the other trainers. The loss is averaged over positions
        (upstream averages per-batch means). :meth:`evaluate_all` returns every metric."""
        model, loader = (self.model, model_or_loader) if data_loader is None else (model_or_loader, data_loader)
        metrics = self.evaluate_all(model, loader)
        return metrics["loss"], metrics["top1_accuracy"]

    @torch.no_grad()
    def predict(self, model: nn.Module, data: Any, k: int = 10, exclude_history: bool = True, *,
                vocab: Any = None, times: Sequence[Sequence[Any]] | None = None, return_scores: bool = False,
                batch_size: int = 256) -> Any:
        """The ``k`` best next items after each history, best first.

        Args:
            model: the trained model.
            data: a loader of sequence batches, a ``[N, L]`` token tensor, a ``(tokens, time_diffs)``
                pair, or a list of histories (oldest first): tokens, or raw item ids with ``vocab``.
            k: items per history.
            exclude_history: never recommend an item of the history (PAD never is).
            vocab: an :class:`trainhub.data.ItemVocab` (e.g. ``data.vocab``): histories are raw ids
                (items the vocabulary does not know are dropped, with a logged count) and the
                result is raw ids, one list per history.
            times: timestamps (seconds) of list histories, for the time differences.
            return_scores: also return the ``[N, k]`` scores.
            batch_size: histories scored at once when ``data`` is not a loader.

        Returns:
            ``[N, k]`` token ids (PAD in slots beyond the items left), or lists of raw ids with
            ``vocab``; ``(ids, scores)`` with ``return_scores``. Under torchrun each rank scores its
            block of rows and every rank returns all rows, in order.
        """
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        loader = self._prediction_loader(model, data, vocab, times, batch_size)

        def step(scoring: nn.Module, batch: Any) -> torch.Tensor:
            tokens, diffs = _tokens_and_diffs(batch)
            ids, scores = self.task.top_k(scoring, tokens, diffs, k, exclude_history)
            return torch.cat([ids.double(), scores.double()], dim=1)  # one tensor to gather (ids exact in float64)

        rows = self._predict_rows(model, loader, step)
        width = min(k, rows.shape[1] // 2) if rows is not None else k
        ids = rows[:, :width].long() if rows is not None else torch.zeros(0, k, dtype=torch.long)
        scores = rows[:, width:].float() if rows is not None else torch.zeros(0, k)
        if vocab is not None:
            ids = [vocab.decode(row[row != PAD]).tolist() for row in ids]
        return (ids, scores) if return_scores else ids

    def _prediction_loader(self, model: nn.Module, data: Any, vocab: Any, times: Any, batch_size: int) -> Any:
        if hasattr(data, "__array__") and not isinstance(data, torch.Tensor) and vocab is None:
            data = torch.as_tensor(np.asarray(data))  # a numpy [N, L] token array
        if isinstance(data, DataLoader) or (hasattr(data, "__iter__") and not isinstance(data, (list, tuple))
                                             and not isinstance(data, torch.Tensor) and not hasattr(data, "__array__")):
            return data
        if isinstance(data, torch.Tensor):
            tokens, diffs = data, torch.zeros_like(data)
        elif isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
            tokens, diffs = data
        else:
            max_len = getattr(unwrap_model(model), "max_seq_len", None) or max((len(h) for h in data), default=1)
            if vocab is not None:
                from trainhub.data.interactions import encode_histories

                tokens, diffs = encode_histories(vocab, data, int(max_len), times)
            else:
                tokens, diffs = _pad_histories(data, int(max_len), times)
        if tokens.dim() != 2:
            raise ValueError(f"histories must be [N, L] tokens, got {tuple(tokens.shape)}")
        dataset = TensorDataset(tokens.long(), torch.arange(tokens.shape[1]).expand_as(tokens), diffs,
                                torch.zeros(len(tokens), dtype=torch.long))
        return DataLoader(dataset, batch_size=batch_size)

    def export_onnx(self, output_path: str | Path, batch_size: int = 2, seq_length: int = 50,
                    vocab_size: int | None = None, opset_version: int = 14, dynamic_batch: bool = True,
                    device: str | None = None, verbose: bool = False, onnx_export_kwargs: dict | None = None, *,
                    last_position: bool = False, verify: bool = True) -> bool:
        """Export the scoring graph to ONNX (extra: ``onnx``), Torch-RecHub's method.

        Inputs ``seq_tokens`` (int64 ``[B, L]``) and ``seq_time_diffs`` (float32 ``[B, L]``, as
        upstream; dropped from the graph when the model ignores it); output ``output``: logits
        ``[B, L, V]``, or ``[B, V]`` of the last position with ``last_position=True`` (what serving
        ranks). With ``dynamic_batch`` both the batch and the sequence axes are dynamic. The graph
        is checked against PyTorch in onnxruntime on another batch size and length (``verify``)
        and written atomically. Returns True, or raises :class:`trainhub.export.ExportError`.
        """
        return _export_scoring_graph(
            _ScoringGraph(unwrap_model(self.model), last_position), output_path, batch_size=batch_size,
            seq_length=seq_length, vocab_size=vocab_size, opset_version=opset_version, dynamic_batch=dynamic_batch,
            device=device or "cpu", verbose=verbose, onnx_export_kwargs=onnx_export_kwargs, verify=verify)

    def visualization(self, seq_length: int = 50, vocab_size: int | None = None, batch_size: int = 2, depth: int = 3,
                      show_shapes: bool = True, expand_nested: bool = True, save_path: str | None = None,
                      graph_name: str = "model", device: str | None = None, dpi: int = 300, **kwargs: Any) -> Any:
        """Draw the model's graph (torchview; extra ``visualization``) on a random batch of
        ``batch_size`` sequences of ``seq_length`` tokens, Torch-RecHub's signature."""
        from trainhub.trainers.visualization import visualize_model

        bare = unwrap_model(self.model)
        vocab_size = vocab_size or _model_vocab(bare)
        g = torch.Generator().manual_seed(0)
        dummy = {"seq_tokens": torch.randint(1, vocab_size, (batch_size, seq_length), generator=g),
                 "seq_time_diffs": torch.zeros(batch_size, seq_length)}
        return visualize_model(_DictInput(bare), input_data=dummy, depth=depth, show_shapes=show_shapes,
                               expand_nested=expand_nested, save_path=save_path, graph_name=graph_name,
                               device=device or "cpu", dpi=dpi, **kwargs)


def _model_vocab(model: nn.Module) -> int:
    size = getattr(model, "vocab_size", None) or getattr(model, "item_num", None)
    if size is None:
        raise ValueError("vocab_size must be given, or the model must have a vocab_size (or item_num) attribute")
    return int(size)


def _tokens_and_diffs(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, dict):
        return batch["seq_tokens"], batch.get("seq_time_diffs")
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 4):
        return (batch[0], batch[1]) if len(batch) == 2 else (batch[0], batch[2])
    if isinstance(batch, torch.Tensor):
        return batch, None
    raise ValueError("prediction batches are (seq_tokens, seq_positions, seq_time_diffs, targets), "
                     "(seq_tokens, time_diffs) or a seq_tokens tensor")


def _pad_histories(histories: Sequence[Sequence[int]], max_len: int, times: Any) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.zeros(len(histories), max_len, dtype=torch.long)
    diffs = torch.zeros(len(histories), max_len, dtype=torch.long)
    for row, history in enumerate(histories):
        items = torch.as_tensor(list(history), dtype=torch.long)[-max_len:]
        if len(items):
            tokens[row, max_len - len(items):] = items
        if times is not None and len(items):
            stamps = torch.as_tensor(list(times[row]), dtype=torch.long)[-max_len:]
            diffs[row, max_len - len(stamps):] = stamps[-1] - stamps
    return tokens, diffs


class _ScoringGraph(nn.Module):
    """``(seq_tokens, seq_time_diffs) -> logits`` of every position, or of the last one."""

    def __init__(self, model: nn.Module, last_position: bool):
        super().__init__()
        self.model, self.last_position = model, last_position

    def forward(self, seq_tokens: torch.Tensor, seq_time_diffs: torch.Tensor) -> torch.Tensor:
        logits = sequence_logits(self.model, seq_tokens, seq_time_diffs)
        return logits[:, -1] if self.last_position else logits


class _DictInput(nn.Module):
    """A sequence model behind the one-dict input torchview is given by ``visualize_model``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: dict) -> torch.Tensor:
        return sequence_logits(self.model, x["seq_tokens"], x["seq_time_diffs"])


def _export_scoring_graph(graph: _ScoringGraph, output_path: str | Path, *, batch_size: int, seq_length: int,
                          vocab_size: int | None, opset_version: int, dynamic_batch: bool, device: str, verbose: bool,
                          onnx_export_kwargs: dict | None, verify: bool) -> bool:
    """Export ``graph`` with the TorchScript exporter, else ``torch.export``; verify it in onnxruntime."""
    from trainhub.export.onnx import (
        ExportError,
        _first_line,
        _onnxruntime,
        _prune_unused_inputs,
        _require_onnx,
        _verify,
    )
    from trainhub.files import atomic_write

    _require_onnx()
    if verify:
        _onnxruntime()  # fail here, naming the extra
    kwargs = dict(onnx_export_kwargs or {})
    clash = set(kwargs) & {"f", "input_names", "output_names", "opset_version", "dynamic_axes", "dynamic_shapes"}
    if clash:
        raise ValueError(f"onnx_export_kwargs must not set {sorted(clash)}; use export_onnx()'s parameters")
    dynamo = kwargs.pop("dynamo", None)
    exporters = [False, True] if dynamo is None else [bool(dynamo)]
    model, name = graph.model, type(graph.model).__name__
    vocab = vocab_size or _model_vocab(model)
    max_len = getattr(model, "max_seq_len", None)
    length = max(2, min(seq_length, int(max_len)) if max_len else seq_length)
    g = torch.Generator().manual_seed(0)

    def dummy(rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.randint(1, vocab, (rows, cols), generator=g)
        tokens[0, : cols // 2] = PAD  # one left-padded row
        diffs = torch.randint(0, 86_400, (rows, cols), generator=g).sort(dim=1, descending=True).values
        return tokens.to(device), diffs.float().masked_fill(tokens.cpu() == PAD, 0.0).to(device)

    args = dummy(batch_size, length)
    # Verified on another batch size and length: a size recorded as a constant fails the check.
    check = dummy(2 * batch_size + 1, length - 1) if dynamic_batch else dummy(batch_size, length)
    names, outputs = ["seq_tokens", "seq_time_diffs"], ["output"]
    was_training, device_before = model.training, next(iter(model.parameters()), torch.empty(0)).device
    graph.eval().to(device)
    try:
        with torch.no_grad():
            expected = [graph(*check).detach().cpu().numpy()]
        errors = []
        for use_dynamo in exporters:
            label = "torch.export" if use_dynamo else "TorchScript"
            try:
                data = _onnx_bytes(graph, args, names, outputs, opset_version, dynamic_batch, use_dynamo, verbose,
                                   kwargs, max_len)
                data, unused = _prune_unused_inputs(data)
                if verify:
                    _verify(data, {n: t for n, t in zip(names, check) if n not in unused}, expected)
                break
            except Exception as err:  # noqa: BLE001 - reported below, per exporter
                errors.append(f"{label} exporter: {_first_line(err)}")
                log.debug("%s export of %s failed", label, name, exc_info=True)
        else:
            raise ExportError(f"cannot export {name}: " + "; ".join(errors))
        Path(output_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(output_path, lambda tmp: Path(tmp).write_bytes(data))
        log.info("exported %s to %s with the %s exporter, inputs %s", name, output_path, label,
                 [n for n in names if n not in unused])
        return True
    finally:
        model.train(was_training).to(device_before)


def _onnx_bytes(graph: nn.Module, args: tuple, names: list[str], outputs: list[str], opset_version: int,
                dynamic: bool, dynamo: bool, verbose: bool, kwargs: dict, max_len: int | None) -> bytes:
    import io
    import warnings

    from trainhub.export.onnx import _quiet

    out_axes = {0: "batch_size", 1: "seq_length"} if not graph.last_position else {0: "batch_size"}
    with warnings.catch_warnings(), torch.no_grad(), _quiet(verbose):
        warnings.simplefilter("ignore")  # exporter deprecation and tracer warnings; failures raise
        if dynamo:
            shapes = None
            if dynamic:
                batch = torch.export.Dim("batch_size")
                length = torch.export.Dim("seq_length", min=2, max=int(max_len)) if max_len else \
                    torch.export.Dim("seq_length", min=2)
                shapes = tuple({0: batch, 1: length} for _ in args)
            program = torch.onnx.export(graph, args, None, input_names=names, output_names=outputs,
                                        opset_version=max(opset_version, 18), dynamo=True, dynamic_shapes=shapes,
                                        verbose=verbose, **kwargs)
            return program.model_proto.SerializeToString()
        buffer = io.BytesIO()
        axes = {**{n: {0: "batch_size", 1: "seq_length"} for n in names}, outputs[0]: out_axes} if dynamic else None
        torch.onnx.export(graph, args, buffer, input_names=names, output_names=outputs, opset_version=opset_version,
                          dynamo=False, dynamic_axes=axes, do_constant_folding=True, verbose=verbose, **kwargs)
        return buffer.getvalue()
