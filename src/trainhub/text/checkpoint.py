"""A self-contained best-model folder, written by the engine through its checkpointer interface.

``<output_dir>/best_model/`` holds everything a reload needs, so no original files are required:

* ``model.safetensors``: all weights (encoder + heads), with the best step/metric as metadata;
* ``encoder/config.json``: the encoder architecture (rebuilt with ``AutoModel.from_config``);
* tokenizer files (``tokenizer.json``, ``tokenizer_config.json``, ...);
* ``experiment_config.yaml``: the config with discovered labels filled in;
* ``label_maps.json``: ``{task: {"type", "heads": {head: [label names]}}}``;
* ``trainer_state.json``: ``{"epoch", "step", "monitor", "mode", "best_value"}`` of the best
  evaluation (``step`` counts optimizer steps).

``<output_dir>/last.ckpt`` is the resume state (when ``save_strategy`` is not ``best``/``no``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from trainhub.engine.checkpoint import RESUME_HINT, Checkpointer, save_weights
from trainhub.files import write_text_atomic
from trainhub.text.config import ExperimentConfig, save_experiment_config, save_label_maps

__all__ = ["TextCheckpointer", "WEIGHTS_NAME", "save_model_folder"]

WEIGHTS_NAME = "model.safetensors"


def save_model_folder(folder: str | Path, model: nn.Module, config: ExperimentConfig, tokenizer: Any,
                      metadata: dict[str, Any] | None = None) -> Path:
    """Write weights, encoder config, tokenizer, experiment config and label maps to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bare = model.module if hasattr(model, "module") else model
    encoder_config = getattr(getattr(bare, "encoder", None), "config", None)
    if encoder_config is not None and hasattr(encoder_config, "save_pretrained"):
        encoder_config.save_pretrained(str(folder / "encoder"))
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(str(folder))
    save_experiment_config(config, folder / "experiment_config.yaml")
    save_label_maps(config, folder / "label_maps.json")
    save_weights(folder / WEIGHTS_NAME, model, metadata)  # last, so a complete folder has weights
    return folder


class TextCheckpointer(Checkpointer):
    """The engine's checkpointer, with the best model kept as a reloadable folder.

    Args:
        output_dir: run folder; the best model goes to ``output_dir/best_model``.
        config: experiment config (saved beside the weights).
        tokenizer: saved beside the weights.
        save_last: also keep ``output_dir/last.ckpt`` for resuming.
    """

    resume_hint = RESUME_HINT.replace("resume=False", "training.resume: false")

    def __init__(self, output_dir: str | Path, config: ExperimentConfig, tokenizer: Any, save_last: bool = True):
        super().__init__(output_dir, save_last=save_last)
        self.config = config
        self.tokenizer = tokenizer
        self._static_written = False

    @property
    def best_dir(self) -> Path:
        return self.dirpath / "best_model"

    @property
    def best_path(self) -> Path:
        return self.best_dir / WEIGHTS_NAME

    @property
    def final_dir(self) -> Path:
        return self.dirpath / "final_model"

    def run_files(self) -> list[Path]:
        """What one run writes here: the best-model folder, the resume state and ``final_model``."""
        return [self.best_dir, self.last_path, self.final_dir]

    def save_best(self, model: nn.Module, metadata: dict[str, Any] | None = None) -> Path:
        if not self._static_written:
            # Tokenizer and configs do not change during training: write them once.
            save_model_folder(self.best_dir, model, self.config, self.tokenizer, metadata)
            self._static_written = True
        else:
            save_weights(self.best_path, model, metadata)
        write_text_atomic(self.best_dir / "trainer_state.json", json.dumps(metadata or {}, indent=2, default=str))
        return self.best_path
