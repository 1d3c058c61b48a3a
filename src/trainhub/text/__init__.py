"""Config-driven multi-task transformer training (extra: ``text``).

A shared encoder with per-task heads (single-/multi-label classification, NER, regression),
trained on the engine from a YAML config. The upstream ``multitask_bert`` paths re-export these.

Example:
    >>> from trainhub.text import Trainer
    >>> trainer = Trainer.from_config("examples/text/demo.yaml")
    >>> trainer.train(); print(trainer.evaluate()); trainer.close()
"""

from trainhub.text.config import (
    ConfigError,
    ExperimentConfig,
    HeadConfig,
    LoggingConfig,
    ModelConfig,
    TaskConfig,
    TokenizerConfig,
    TrainingConfig,
    load_experiment_config,
)

__all__ = [
    "ConfigError",
    "DataProcessor",
    "ExperimentConfig",
    "HeadConfig",
    "LoggingConfig",
    "ModelConfig",
    "MultiTaskLoader",
    "MultiTaskModel",
    "Predictor",
    "TaskConfig",
    "TokenizerConfig",
    "Trainer",
    "TrainingConfig",
    "load_experiment_config",
    "load_predictor",
]

_LAZY = {
    "DataProcessor": "trainhub.text.processing",
    "MultiTaskLoader": "trainhub.text.sampling",
    "MultiTaskModel": "trainhub.text.model",
    "Predictor": "trainhub.text.predict",
    "load_predictor": "trainhub.text.predict",
    "Trainer": "trainhub.text.trainer",
}


def __getattr__(name: str):
    # Lazy so `import trainhub.text` stays light (no torch.utils.data / sklearn / transformers yet).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trainhub.text' has no attribute {name!r}")
