"""MatchTrainer with Torch-RecHub's constructor and methods, on the shared engine."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from trainhub.engine import unwrap_model
from trainhub.engine.checkpoint import load_state
from trainhub.tasks.ctr import split_batch
from trainhub.tasks.match import InBatchNegatives, MatchTask, objective_for_mode
from trainhub.tasks.regularization import Regularization
from trainhub.trainers.base import RecTrainer

__all__ = ["MatchTrainer"]

log = logging.getLogger(__name__)

_EMBEDDING_MODES = ("user", "item")


class MatchTrainer(RecTrainer):
    """Train a retrieval (matching) model point-wise, pair-wise or list-wise.

    Args:
        model: a matching model (see :mod:`trainhub.models.matching.base` for the tower protocol).
        mode: 0 point-wise (BCE with logits on labelled pairs, batches ``(x, y)`` with 0/1 ``y``),
            1 pair-wise (BPR on ``(pos, neg)`` scores or ``[B, 1+K]`` logits, ``y`` ignored),
            2 list-wise (softmax cross-entropy over ``[B, C]`` logits, target column ``y``,
            all zeros when the positive comes first).
        in_batch_neg: score each user against the other items of the batch (needs
            ``user_tower``/``item_tower``; works for multi-interest models; honours ``temperature``).
            Mode 1 then uses BPR, modes 0 and 2 softmax cross-entropy.
        in_batch_neg_ratio: in-batch negatives per row (``None``: all other items).
        hard_negative: take the highest-scoring in-batch negatives instead of random ones.
        sampler_seed: seed of the in-batch negative sampler.
        optimizer_fn / optimizer_params / regularization_params / scheduler_fn / scheduler_params /
            n_epoch / earlystop_patience / device / gpus / model_path / model_logger: as
            :class:`trainhub.trainers.CTRTrainer`.
        **kwargs: engine options, see :class:`trainhub.trainers.base.RecTrainer`.

    Validation (``fit(train_dl, val_dl)``) early-stops on ``auc``: ROC AUC of labelled pairs in
    mode 0, otherwise the mean per-row fraction of negatives scored below the positive.

    Example:
        >>> trainer = MatchTrainer(model, mode=2, optimizer_params={"lr": 1e-3, "weight_decay": 1e-6}, n_epoch=5)
        >>> trainer.fit(train_dl)
        >>> user_emb = trainer.inference_embedding(model, "user", test_user_dl, model_path="./")
        >>> item_emb = trainer.inference_embedding(model, "item", item_dl, model_path="./")
    """

    def __init__(
        self,
        model: nn.Module,
        mode: int = 0,
        in_batch_neg: bool = False,
        in_batch_neg_ratio: int | None = None,
        hard_negative: bool = False,
        sampler_seed: int | None = None,
        optimizer_fn=torch.optim.Adam,
        optimizer_params: dict | None = None,
        regularization_params: dict | None = None,
        scheduler_fn=None,
        scheduler_params: dict | None = None,
        n_epoch: int = 10,
        earlystop_patience: int = 10,
        device: str = "cpu",
        gpus: Sequence[int] | None = None,
        model_path: str = "./",
        model_logger: Any = None,
        **kwargs: Any,
    ):
        objective = objective_for_mode(mode)  # fail before any setup on a bad mode
        negatives = None
        if in_batch_neg:
            InBatchNegatives.check_model(model)
            negatives = InBatchNegatives(in_batch_neg_ratio, hard=hard_negative, seed=sampler_seed)
        self.mode = mode
        self.in_batch_neg = in_batch_neg
        self.regularization = Regularization(regularization_params)
        self.task = MatchTask(objective, negatives, regularization=self.regularization)
        super().__init__(model, optimizer_fn, optimizer_params, scheduler_fn, scheduler_params, n_epoch,
                         earlystop_patience, device, gpus, model_path, model_logger, **kwargs)

    def hyperparams(self) -> dict[str, Any]:
        return {**super().hyperparams(), "mode": self.mode, "in_batch_neg": self.in_batch_neg}

    @torch.no_grad()
    def inference_embedding(self, model: nn.Module, mode: str, data_loader: Iterable,
                            model_path: str | Path | None = None) -> torch.Tensor:
        """Embeddings of every row of ``data_loader``: ``[N, D]`` (multi-interest users ``[N, K, D]``).

        Args:
            model: the matching model (a DataParallel/DDP wrapper is unwrapped).
            mode: ``"user"`` or ``"item"``.
            data_loader: yields ``x`` dicts (or ``(x, y)``, the ``y`` is ignored).
            model_path: folder holding ``model.pth`` saved by :meth:`fit` (or a path to the file);
                its weights are loaded first. ``None`` keeps the model's current weights.

        The model's previous ``mode`` and train/eval state are restored afterwards. Returned on CPU;
        under torchrun every rank embeds its block of rows and returns all rows in order.
        """
        if mode not in _EMBEDDING_MODES:
            raise ValueError(f"mode must be 'user' or 'item', got {mode!r}")
        base = unwrap_model(model)
        if not hasattr(base, "mode"):
            raise TypeError(f"{type(base).__name__} has no 'mode' attribute; matching models switch towers with it")
        if model_path is not None:  # rank 0 reads the file, every rank gets its weights
            if self.runtime.is_main:
                self._load_weights(base, Path(model_path))
            self.runtime.broadcast_module(base)
        previous_mode = base.mode
        base.mode = mode
        try:  # the towers are called on the bare model (no DataParallel/DDP forward)
            outputs = self._predict_rows(base, data_loader, lambda m, batch: m(split_batch(batch)[0]))
        finally:
            base.mode = previous_mode
        if outputs is None:
            raise ValueError("the data loader yielded no batches")
        return outputs

    def export_onnx(self, output_path: str | Path, mode: str | None = None, dummy_input: dict | None = None,
                    batch_size: int = 2, seq_length: int = 10, opset_version: int = 14, dynamic_batch: bool = True,
                    device: str | None = None, verbose: bool = False,
                    onnx_export_kwargs: dict | None = None) -> bool:
        """Export the model, or one tower, to ONNX (extra: ``onnx``).

        Args:
            output_path: the ``.onnx`` file (written atomically).
            mode: ``"user"`` (user tower: user embeddings ``[B, D]`` or ``[B, K, D]``), ``"item"``
                (item tower) or ``None`` (the training scores).
            dummy_input / batch_size / seq_length / opset_version / dynamic_batch / device / verbose /
                onnx_export_kwargs: as :meth:`trainhub.export.ONNXExporter.export`.

        Example:
            >>> trainer.export_onnx("user_tower.onnx", mode="user")
            >>> trainer.export_onnx("item_tower.onnx", mode="item")
        """
        if mode is not None and mode not in _EMBEDDING_MODES:
            raise ValueError(f"mode must be None, 'user' or 'item', got {mode!r}")
        return self._export_onnx(output_path, mode, dummy_input, batch_size, seq_length, opset_version,
                                 dynamic_batch, device, verbose, onnx_export_kwargs)

    def _load_weights(self, model: nn.Module, path: Path) -> None:
        file = path if path.is_file() else path / self.model_filename
        if not file.exists():
            raise FileNotFoundError(f"no saved weights at {file}; call fit() first or pass model_path=None "
                                    "to embed with the current weights")
        state = load_state(file, map_location=self.device)
        # Files written by a DataParallel model elsewhere carry a "module." prefix; ours never do.
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        model.load_state_dict(state)
        log.info("loaded weights from %s", file)
