"""Command-line helpers shared by ``trainhub train`` and ``python -m multitask_bert``."""

from __future__ import annotations

import json
import logging
from typing import Any, Sequence

__all__ = ["run_experiment", "run_predict"]

log = logging.getLogger(__name__)


def run_experiment(config_path: str, overrides: Sequence[str] = (), evaluate_test: bool = True) -> dict[str, Any]:
    """Train from a YAML config, then evaluate the restored best model on eval (and test) data.

    Returns:
        ``{"eval": {...}, "test": {...} | None, "best_model": path | None}``.
    """
    from trainhub.text.trainer import Trainer

    trainer = Trainer.from_config(config_path, overrides)
    try:
        trainer.train()
        results: dict[str, Any] = {"eval": trainer.evaluate() if trainer.eval_dataloaders else {}, "test": None}
        if evaluate_test and trainer.test_dataloaders:
            results["test"] = trainer.evaluate(test=True)
        best = trainer.output_dir / "best_model"
        results["best_model"] = str(best) if best.is_dir() else None
        return results
    finally:
        trainer.close()


def run_predict(model_dir: str, task: str, texts: Sequence[str], device: str | None = None) -> Any:
    """Reload a saved model folder and predict ``texts`` for ``task``."""
    from trainhub.text.predict import Predictor

    return Predictor.from_pretrained(model_dir, device=device or "cpu").predict(list(texts), task=task)


def format_results(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=2, ensure_ascii=False, default=str)
