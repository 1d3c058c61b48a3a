"""A self-contained best-model folder, written by the engine through the Checkpointer interface.

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
from typing import Any, Dict, Optional

from torch import nn

from trainhub.engine.checkpoint import (
    RESUME_HINT,
    load_state,
    load_weights,
    save_state,
    save_weights,
)
from trainhub.files import remove_run_files, write_text_atomic
from trainhub.text.config import ExperimentConfig, save_experiment_config
from trainhub.text.processing import save_label_maps

__all__ = ["TextCheckpointer", "WEIGHTS_NAME", "save_model_folder"]

WEIGHTS_NAME = "model.safetensors"


def save_model_folder(folder: str | Path, model: nn.Module, config: ExperimentConfig, tokenizer: Any,
                      metadata: Optional[Dict[str, Any]] = None) -> Path:
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


class TextCheckpointer:
    """Duck-typed engine checkpointer (``save_best``/``has_best``/``load_best``/``save_resume``/
    ``load_resume``) that writes a reloadable model folder.

    Args:
        output_dir: run folder; the best model goes to ``output_dir/best_model``.
        config: experiment config (saved beside the weights).
        tokenizer: saved beside the weights.
        save_last: also keep ``output_dir/last.ckpt`` for resuming.
    """

    def __init__(self, output_dir: str | Path, config: ExperimentConfig, tokenizer: Any, save_last: bool = True):
        self.dirpath = Path(output_dir)
        self.config = config
        self.tokenizer = tokenizer
        self.save_last = save_last
        self._static_written = False

    @property
    def best_dir(self) -> Path:
        return self.dirpath / "best_model"

    @property
    def best_path(self) -> Path:
        return self.best_dir / WEIGHTS_NAME

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    @property
    def final_dir(self) -> Path:
        return self.dirpath / "final_model"

    def run_files(self) -> list[Path]:
        """What one run writes here: the best-model folder, the resume state and ``final_model``."""
        return [self.best_dir, self.last_path, self.final_dir]

    def start_fresh(self) -> list[Path]:
        """Remove an earlier run's folders and files so they never mix with a new run's."""
        return remove_run_files(self.run_files(), self.dirpath)

    def save_best(self, model: nn.Module, metadata: Optional[Dict[str, Any]] = None) -> Path:
        if not self._static_written:
            # Tokenizer and configs do not change during training: write them once.
            save_model_folder(self.best_dir, model, self.config, self.tokenizer, metadata)
            self._static_written = True
        else:
            save_weights(self.best_path, model, metadata)
        write_text_atomic(self.best_dir / "trainer_state.json", json.dumps(metadata or {}, indent=2, default=str))
        return self.best_path

    def has_best(self) -> bool:
        return self.best_path.is_file()

    def load_best(self, model: nn.Module) -> nn.Module:
        return load_weights(self.best_path, model)

    def save_resume(self, payload: Dict[str, Any]) -> Optional[Path]:
        return save_state(self.last_path, payload) if self.save_last else None

    def load_resume(self) -> Optional[Dict[str, Any]]:
        return load_state(self.last_path, hint=RESUME_HINT.replace("resume=False", "training.resume: false"))\
            if self.last_path.is_file() else None
