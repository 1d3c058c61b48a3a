"""``multitask_bert.core.config``: the experiment config classes (see :mod:`trainhub.text.config`)."""

from trainhub.text.config import (  # noqa: F401
    ConfigError,
    ExperimentConfig,
    FusionConfig,
    HeadConfig,
    LoggingConfig,
    ModelConfig,
    TaskConfig,
    TokenizerConfig,
    TrainingConfig,
    load_experiment_config,
    save_experiment_config,
)

__all__ = ["ConfigError", "ExperimentConfig", "FusionConfig", "HeadConfig", "LoggingConfig", "ModelConfig",
           "TaskConfig", "TokenizerConfig", "TrainingConfig", "load_experiment_config", "save_experiment_config"]
