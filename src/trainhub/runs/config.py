"""The run configuration of ``trainhub train`` for CTR, matching and multi-task models.

One YAML file per experiment, validated strictly: an unknown or mistyped key fails at load time
with its dotted path (``trainer.n_epochs: unknown key; trainhub calls it trainer.n_epoch``).
Keys of other tools' configs (FuxiCTR, RecBole) are recognised and answered with the trainhub
key that means the same.

Sections:

* ``dataset``: CSV/Parquet files (``train`` and optionally ``val``/``test``) or a named dataset
  (``name``, see ``trainhub list-datasets``), and the role of each column: ``label``, ``sparse``,
  ``dense``, ``sequence``, plus named feature ``groups`` the model parameters refer to.
* ``model``: a registry name (``trainhub list-models``) and its constructor ``params``. A
  parameter named ``features`` or ending in ``_features``/``_feature`` names columns or groups
  (``deep_features: [dense, sparse]``); every other parameter is passed as written.
* ``trainer``: the Torch-RecHub trainer's parameters (``n_epoch``, ``earlystop_patience``,
  ``optimizer``, matching ``mode``/``in_batch_neg``, multi-task ``task_types``...) and
  ``batch_size``.
* ``loggers``: ``[csv, tensorboard, mlflow]`` or a mapping with ``names``, ``experiment_name``,
  ``tracking_uri``.

Example:
    >>> cfg = load_run_config("examples/configs/deepfm_ctr.yaml", ["trainer.n_epoch=1"])
    >>> cfg.model.name
    'DeepFM'
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainhub.text.config import ConfigError, apply_overrides

__all__ = [
    "RunConfig",
    "DatasetConfig",
    "ModelSection",
    "TrainerConfig",
    "LoggersConfig",
    "ColumnSpec",
    "SequenceSpec",
    "ConfigError",
    "config_kind",
    "load_run_config",
    "FOREIGN_KEYS",
]

#: Keys of FuxiCTR / RecBole / Torch-RecHub-script configs and the trainhub key that means the same.
FOREIGN_KEYS = {
    "feature_cols": "dataset.sparse and dataset.dense (column lists)",
    "label_col": "dataset.label",
    "label_field": "dataset.label",
    "train_data": "dataset.train",
    "valid_data": "dataset.val",
    "test_data": "dataset.test",
    "dataset_id": "dataset.name (a named dataset) or dataset.train (files)",
    "data_root": "the paths in dataset.train / dataset.val / dataset.test",
    "data_format": "nothing: CSV/TSV/Parquet is read from the file suffix",
    "data_path": "dataset.train",
    "embedding_dim": "dataset.embed_dim",
    "embedding_size": "dataset.embed_dim",
    "embed_dim": "dataset.embed_dim",
    "epochs": "trainer.n_epoch",
    "n_epochs": "trainer.n_epoch",
    "num_epochs": "trainer.n_epoch",
    "batch_size": "trainer.batch_size",
    "train_batch_size": "trainer.batch_size",
    "eval_batch_size": "trainer.eval_batch_size",
    "learning_rate": "trainer.optimizer.lr",
    "lr": "trainer.optimizer.lr",
    "weight_decay": "trainer.optimizer.weight_decay",
    "optimizer": "trainer.optimizer.name",
    "hidden_units": "model.params.mlp_params.dims",
    "dnn_hidden_units": "model.params.mlp_params.dims",
    "net_dropout": "model.params.mlp_params.dropout",
    "monitor": "trainer.earlystop_monitor",
    "valid_metric": "trainer.earlystop_monitor",
    "early_stop_patience": "trainer.earlystop_patience",
    "stopping_step": "trainer.earlystop_patience",
    "patience": "trainer.earlystop_patience",
    "USER_ID_FIELD": "dataset.user_id",
    "ITEM_ID_FIELD": "dataset.item_id",
    "topk": "trainer.topk",
    "model_root": "output_dir",
    "checkpoint_dir": "output_dir",
    "gpu": "trainer.device",
    "use_gpu": "trainer.device",
    "metrics": "nothing: every metric of the task is computed",
    "loss": "nothing: the loss follows the trainer (ctr/match mode/mtl task_types)",
    "n_epoch": "trainer.n_epoch",
    "earlystop_patience": "trainer.earlystop_patience",
    "device": "trainer.device",
    "mlp_params": "model.params.mlp_params",
    "sparse": "dataset.sparse",
    "dense": "dataset.dense",
    "label": "dataset.label",
    "train": "dataset.train",
    "params": "model.params",
    "logger": "loggers",
    "logging": "loggers",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ColumnSpec(_Section):
    """Options of one categorical column.

    Attributes:
        embed_dim: embedding size (default: ``dataset.embed_dim``).
        vocab: read the ids and the embedding table of another column (e.g. a second item column).
        hash_buckets: hash values into this many buckets instead of keeping a vocabulary.
    """

    embed_dim: Optional[int] = Field(None, ge=1)
    vocab: Optional[str] = None
    hash_buckets: Optional[int] = Field(None, ge=1)


class SequenceSpec(_Section):
    """A list column (cells ``"3,17,5"`` or lists), encoded item by item and padded.

    Attributes:
        vocab: the categorical column whose vocabulary and embedding table the items use
            (``hist_item_id`` -> ``item_id``); None gives the sequence its own.
        max_len: padded length (default: the longest in the training rows); longer ones keep
            their last items.
        pooling: ``mean``, ``sum`` or ``concat`` (attention models such as DIN need ``concat``).
        embed_dim: defaults to the embed_dim of ``vocab``'s column, else ``dataset.embed_dim``.
    """

    vocab: Optional[str] = None
    max_len: Optional[int] = Field(None, ge=1)
    pooling: Literal["mean", "sum", "concat"] = "mean"
    embed_dim: Optional[int] = Field(None, ge=1)


PathList = Union[str, List[str]]


class DatasetConfig(_Section):
    """Where the rows come from and what each column is.

    Give either ``name`` (a named dataset, with ``params`` for its generator) or ``train`` (CSV,
    TSV or Parquet files; a list, a directory or a glob). Without ``val``/``test`` files the
    training rows are split with ``split`` (train and validation shares; the rest is test).
    A named dataset fills in its column roles; any role given here replaces its default.
    """

    name: Optional[str] = None
    params: Dict[str, Any] = Field(default_factory=dict)
    train: Optional[PathList] = None
    val: Optional[PathList] = None
    test: Optional[PathList] = None
    split: List[float] = Field(default_factory=lambda: [0.8, 0.1])
    split_seed: int = 2022
    csv_sep: Optional[str] = None
    label: Union[str, List[str], None] = None
    sparse: Union[List[str], Dict[str, Optional[ColumnSpec]]] = Field(default_factory=list)
    dense: List[str] = Field(default_factory=list)
    sequence: Dict[str, Optional[SequenceSpec]] = Field(default_factory=dict)
    sequence_sep: str = ","
    groups: Dict[str, List[str]] = Field(default_factory=dict)
    embed_dim: int = Field(16, ge=1)
    min_freq: int = Field(1, ge=1)
    dense_scaling: Literal["minmax", "standard", "none"] = "minmax"
    user_id: Optional[str] = None
    item_id: Optional[str] = None
    item_columns: Optional[List[str]] = None
    # next-item (generative) runs: an interaction log of user_id, item_id and timestamp columns
    timestamp: Optional[str] = None
    max_seq_len: int = Field(50, ge=1)
    sequence_split: Literal["leave_one_out", "time"] = "leave_one_out"
    val_start: Optional[Union[float, str]] = None
    test_start: Optional[Union[float, str]] = None
    min_interactions: Optional[int] = Field(None, ge=2)
    layout: Literal["user", "sliding"] = "user"
    time_unit: str = "s"
    csv_options: Dict[str, Any] = Field(default_factory=dict)

    @field_validator("split")
    @classmethod
    def _check_split(cls, value: List[float]) -> List[float]:
        if len(value) != 2 or min(value) < 0 or sum(value) > 1 or value[0] <= 0:
            raise ValueError(f"split is [train share, validation share] summing to <= 1, got {value}")
        return value

    @model_validator(mode="after")
    def _check_source(self) -> "DatasetConfig":
        if (self.name is None) == (self.train is None):
            raise ValueError("give dataset.name (a named dataset) or dataset.train (files), exactly one of them")
        return self

    @property
    def labels(self) -> List[str]:
        return [] if self.label is None else [self.label] if isinstance(self.label, str) else list(self.label)

    @property
    def sparse_specs(self) -> Dict[str, ColumnSpec]:
        if isinstance(self.sparse, list):
            return {c: ColumnSpec() for c in self.sparse}
        return {c: spec or ColumnSpec() for c, spec in self.sparse.items()}

    @property
    def sequence_specs(self) -> Dict[str, SequenceSpec]:
        return {c: spec or SequenceSpec() for c, spec in self.sequence.items()}


class ModelSection(_Section):
    """A registered model (``trainhub list-models``) and its constructor parameters."""

    name: str
    params: Dict[str, Any] = Field(default_factory=dict)


class OptimizerConfig(BaseModel):
    """``name`` is a ``torch.optim`` class; every other key is passed to it (``lr``, ``weight_decay``...)."""

    model_config = ConfigDict(extra="allow")
    name: str = "Adam"

    @property
    def params(self) -> Dict[str, Any]:
        return dict(self.model_extra or {})


class SchedulerConfig(BaseModel):
    """``name`` is a ``torch.optim.lr_scheduler`` class; other keys are its arguments."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def params(self) -> Dict[str, Any]:
        return dict(self.model_extra or {})


class TrainerConfig(_Section):
    """Trainer parameters. ``type`` follows the model's family unless given.

    Attributes:
        batch_size / eval_batch_size: rows per batch (evaluation defaults to ``4 * batch_size``).
        optimizer: ``{name: Adam, lr: 0.001, weight_decay: 1e-05}`` (Torch-RecHub's defaults).
        earlystop_monitor / earlystop_mode: the validation metric and direction (defaults:
            ``auc`` up; multi-task: the metric of ``earlystop_taskid``; matching: the first
            ``recall_at_K`` when ``dataset.item_id`` is set).
        mode / in_batch_neg / in_batch_neg_ratio / hard_negative / sampler_seed: matching only.
        task_types / adaptive_params / earlystop_taskid: multi-task only (``task_types`` defaults
            to the model's ``task_types`` parameter, else one ``classification`` per label).
        loss_mode: CTR only (False: the model returns ``(logits, aux_loss)``, e.g. DIEN).
        topk: K values of the Recall@K / NDCG@K reported for matching runs (next-item runs: HR/NDCG/MRR@K,
            default 10, 50, 200).
        loss_type / loss_params / exclude_history: next-item (generative) runs only, see
            :class:`trainhub.trainers.SeqTrainer`.
        resume: ``auto`` continues a run that was killed (its staging folder ``.<name>.partial``
            beside ``output_dir``) or trains a finished run further (raise ``n_epoch``), and starts
            afresh when there is nothing to continue; ``true`` is an error then; ``false`` (default)
            starts a new run that replaces ``output_dir`` when it finishes.
    """

    type: Optional[Literal["ctr", "match", "mtl", "seq"]] = None
    n_epoch: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)
    eval_batch_size: Optional[int] = Field(None, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(lr=1e-3, weight_decay=1e-5))
    scheduler: Optional[SchedulerConfig] = None
    regularization: Optional[Dict[str, float]] = None
    earlystop_patience: int = Field(3, ge=1)
    earlystop_monitor: Optional[str] = None
    earlystop_mode: Optional[Literal["max", "min"]] = None
    device: str = "cpu"
    max_grad_norm: Optional[float] = Field(None, gt=0)
    precision: Literal["32", "bf16", "16"] = "32"
    sparse_embeddings: bool = True
    progress: bool = True
    save_last: bool = True
    resume: Union[bool, Literal["auto"]] = False
    loss_mode: Optional[bool] = None
    mode: Optional[int] = None
    in_batch_neg: Optional[bool] = None
    in_batch_neg_ratio: Optional[int] = Field(None, ge=1)
    hard_negative: Optional[bool] = None
    sampler_seed: Optional[int] = None
    task_types: Optional[List[Literal["classification", "regression"]]] = None
    adaptive_params: Optional[Dict[str, Any]] = None
    earlystop_taskid: Optional[int] = Field(None, ge=0)
    topk: List[int] = Field(default_factory=lambda: [10, 50])
    loss_type: Optional[Literal["cross_entropy", "nce", "sampled_softmax"]] = None
    loss_params: Optional[Dict[str, Any]] = None
    exclude_history: Optional[bool] = None

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("topk")
    @classmethod
    def _positive_k(cls, value: List[int]) -> List[int]:
        if not value or min(value) < 1:
            raise ValueError(f"topk needs positive K values, got {value}")
        return value

    @model_validator(mode="after")
    def _family_keys(self) -> "TrainerConfig":
        only = {"ctr": ("loss_mode",), "match": ("mode", "in_batch_neg", "in_batch_neg_ratio", "hard_negative",
                                                   "sampler_seed"),
                "mtl": ("task_types", "adaptive_params", "earlystop_taskid"),
                "seq": ("loss_type", "loss_params", "exclude_history")}
        if self.type is None:
            return self
        for family, keys in only.items():
            if family == self.type:
                continue
            for key in keys:
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} is a {family} trainer setting; this run uses the {self.type} trainer")
        return self


class LoggersConfig(_Section):
    """Where metrics go besides stdout: ``csv``, ``tensorboard``, ``mlflow`` (files under
    ``<output_dir>/logs``; MLflow uses an embedded SQLite store there unless ``tracking_uri``)."""

    names: List[Literal["csv", "tensorboard", "mlflow"]] = Field(default_factory=lambda: ["csv"])
    experiment_name: str = "trainhub"
    tracking_uri: Optional[str] = None
    plots: bool = True


class RunConfig(_Section):
    """One experiment: data, model, trainer, loggers, and where its run folder goes.

    ``name`` names the run (MLflow run name, default ``<model>-<dataset>``); ``output_dir``
    defaults to ``runs/<name>``; ``seed`` seeds everything before the model is built;
    ``num_threads`` sets torch's intra-op threads (small models on a busy machine often run
    fastest with 1).
    """

    name: Optional[str] = None
    output_dir: Optional[str] = None
    seed: int = 2022
    num_threads: Optional[int] = Field(None, ge=1)
    dataset: DatasetConfig
    model: ModelSection
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    loggers: LoggersConfig = Field(default_factory=LoggersConfig)

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("model"), str):  # `model: DeepFM`
            data["model"] = {"name": data["model"]}
        if isinstance(data.get("loggers"), (list, str)):  # `loggers: [csv, mlflow]`
            names = data["loggers"]
            data["loggers"] = {"names": [names] if isinstance(names, str) else names}
        return data

    @property
    def run_name(self) -> str:
        if self.name:
            return self.name
        source = self.dataset.name
        if source is None:
            first = self.dataset.train if isinstance(self.dataset.train, str) else self.dataset.train[0]
            source = Path(first).stem if Path(first).suffix else Path(first).name
        return f"{self.model.name}-{source}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("runs") / self.run_name

    def to_dict(self) -> Dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


# -- loading ----------------------------------------------------------------------------------
def config_kind(data: Any) -> str:
    """``"text"`` (a multi-task text experiment: ``tasks``), ``"rec"`` (``dataset``/``model``/
    ``trainer``), or a ConfigError that says what the file looks like and what is expected."""
    if not isinstance(data, dict):
        raise ConfigError("the top level of the config must be a mapping of keys to values")
    if "tasks" in data:
        return "text"
    if "dataset" in data or "trainer" in data or isinstance(data.get("model"), dict) and "name" in data["model"]:
        return "rec"
    hints = _foreign_hints(data)
    nested = [k for k, v in data.items() if isinstance(v, dict) and ("model" in v or "dataset_id" in v)]
    lines = ["this config is neither a trainhub recommendation run (keys dataset, model, trainer) nor a "
             "text experiment (key tasks)."]
    if nested:
        lines.append(f"It looks like a FuxiCTR experiment file (experiments {nested[:3]} nested under ids); "
                     "trainhub takes one experiment per file.")
    if hints:
        lines.append("Keys that trainhub names differently:")
        lines += [f"  {k} -> {v}" for k, v in hints]
    lines.append("See examples/configs/ and docs/configs.md for the schema.")
    raise ConfigError("\n".join(lines))


def _foreign_hints(data: Dict[str, Any]) -> List[tuple]:
    return [(k, FOREIGN_KEYS[k]) for k in data if k in FOREIGN_KEYS]


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        path = ".".join(loc) or "<root>"
        if e["type"] == "extra_forbidden":
            hint = FOREIGN_KEYS.get(loc[-1])
            if hint and hint != path:
                lines.append(f"  {path}: unknown key; trainhub calls it {hint}")
            else:
                lines.append(f"  {path}: unknown key")
        elif e["type"] == "missing":
            lines.append(f"  {path}: required key is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"  {path}: {msg} (got {e.get('input')!r})")
    return f"invalid run config {source}:\n" + "\n".join(lines)


def _resolve_paths(value: Any, base: Path) -> Any:
    """Relative data paths are read relative to the YAML file when they exist there."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_resolve_paths(v, base) for v in value]
    path = Path(value)
    if path.is_absolute() or path.exists() or not (base / value).exists():
        return value
    return str((base / value).resolve())


def load_run_config(source: Union[str, Path, Dict[str, Any], RunConfig], overrides: Sequence[str] = ()) -> RunConfig:
    """Load and validate a run config from YAML (or a dict), after ``key.sub=value`` overrides.

    Raises:
        ConfigError: every unknown, missing or mistyped key by dotted path, an unknown model
            name (with the closest registered names), or a text/foreign config given by mistake.
        FileNotFoundError: the YAML file does not exist.
    """
    base = None
    if isinstance(source, RunConfig):
        data, where = source.to_dict(), "<object>"
    elif isinstance(source, dict):
        data, where = source, "<dict>"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        where, base = str(path), path.resolve().parent
    if isinstance(data, dict):  # shorthands spelt out first, so `loggers.names=[...]` overrides `loggers: [csv]`
        data = apply_overrides(RunConfig._shorthands(data), overrides)
    if config_kind(data) != "rec":
        raise ConfigError(f"{where} is a text experiment config (it has 'tasks'); load it with "
                          "trainhub.text.load_experiment_config or run it with `trainhub train`")
    data = _with_dataset_defaults(data)
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, where)) from None
    _check_model_name(cfg, where)
    if base is not None:
        for attr in ("train", "val", "test"):
            setattr(cfg.dataset, attr, _resolve_paths(getattr(cfg.dataset, attr), base))
    return cfg


def _with_dataset_defaults(data: Dict[str, Any]) -> Dict[str, Any]:
    """A named dataset supplies its column roles; keys given in the config win."""
    dataset = data.get("dataset")
    if not isinstance(dataset, dict) or not dataset.get("name"):
        return data
    from trainhub.runs.datasets import get_dataset

    try:
        entry = get_dataset(str(dataset["name"]))
    except KeyError as err:
        raise ConfigError(f"dataset.name: {err.args[0]}") from None
    merged = {**entry.columns, **dataset}
    return {**data, "dataset": merged}


def _check_model_name(cfg: RunConfig, where: str) -> None:
    from trainhub.models import list_models

    names = list_models()
    if cfg.model.name not in names:
        close = difflib.get_close_matches(cfg.model.name, names, n=3, cutoff=0.5)
        near = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"invalid run config {where}:\n  model.name: unknown model {cfg.model.name!r}{near} "
                          f"(`trainhub list-models` lists all {len(names)})")
