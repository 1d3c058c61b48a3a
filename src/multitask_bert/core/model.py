"""``multitask_bert.core.model``: :class:`MultiTaskModel` (see :mod:`trainhub.text.model`)."""

from multitask_bert.tasks import TASK_REGISTRY  # noqa: F401
from trainhub.text.model import MultiTaskModel, load_encoder, load_tokenizer, resolve_base_model  # noqa: F401

__all__ = ["MultiTaskModel", "TASK_REGISTRY", "load_encoder", "load_tokenizer", "resolve_base_model"]
