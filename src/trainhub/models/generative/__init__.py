"""Generative recommendation: next-item models (HSTU, SASRec, HLLM) on one interface, and semantic
IDs (RQ-VAE) with TIGER's generative retrieval.

Torch-RecHub 0.9.0 paths: ``torch_rechub.models.generative`` (``HSTUModel``, ``HLLMModel``) and
``torch_rechub.utils.hstu_utils`` (``RelPosBias``, ``RelativeBucketedTimeAndPositionBias``,
``VocabMask``) map here; ``torch_rechub.basic.layers`` (``HSTULayer``, ``HSTUBlock``) maps to
:mod:`trainhub.nn`.

The interface every model here offers (:class:`NextItemModel`; the next-item task and
``SeqTrainer`` rely on nothing else):

* ``forward(seq_tokens [B, L] int64, time_diffs [B, L] | None) -> logits [B, L, V]``: the
  full-softmax path; logit ``[b, t, i]`` scores item ``i`` as the item after position ``t``.
  Column 0 (PAD) is not masked: the task masks it. ``seq_tokens`` may also be a dict with
  ``"seq_tokens"`` and ``"time_diffs"`` (the registry examples' batches).
* ``encode(seq_tokens, time_diffs=None) -> hidden [B, L, D]``: the final per-position user states
  before scoring (zero at PAD positions).
* ``score(hidden [..., D], item_ids=None) -> logits``: ``None`` scores all items (``[..., V]``,
  equal to ``forward``'s logits); ids ``[N]`` are candidates shared by every row (``[..., N]``),
  ids ``[..., N]`` each row's own (``[..., N]``). The model's ``score_norm`` / ``temperature`` /
  output bias apply in every form, so a sampled softmax on ``score(hidden, sampled_ids)`` sees
  exactly the full path's columns.
* ``item_embeddings``: the ``[V, D]`` item table ``score`` reads (for sampled softmax and
  retrieval; ``score`` adds normalisation and bias); ``vocab_size``; ``max_seq_len``.

Input conventions: PAD = 0 and left padding (the most recent item in the last slot). Position ids
are right-aligned, so padding never changes a real position's logits. ``time_diffs`` are seconds
from one anchor (e.g. the last event's time) to each item, 0 at PAD. Sequences longer than
``max_seq_len`` are never an error: the model reads the most recent ``max_seq_len`` positions and
the older positions get PAD outputs (hidden 0), so outputs stay aligned with the input. Ids
outside ``[0, vocab_size)`` raise a ValueError naming the id and ``vocab_size``.

Swapping ``HSTUModel`` for ``SASRecModel`` is a change of model name: shared arguments have the
same names and defaults.

Example:
    >>> from trainhub.models.generative import HSTUModel, VocabMask
    >>> model = HSTUModel(vocab_size=num_items + 1, d_model=64, n_heads=2, n_layers=2, dqk=32, dv=32,
    ...                   max_seq_len=50)
    >>> logits = model(seq_tokens, time_diffs)[:, -1]  # [B, V]: the next item after each history
    >>> top10 = VocabMask(model.vocab_size, [0]).apply_mask(logits, seq_tokens).topk(10).indices
"""

from trainhub.models.generative.base import NextItemModel, example_batch, score_items
from trainhub.models.generative.hllm import HLLMModel, load_item_embeddings
from trainhub.models.generative.hstu import HSTUModel
from trainhub.models.generative.mask import VocabMask
from trainhub.models.generative.quantizer import ResidualVectorQuantizer, VectorQuantizer
from trainhub.models.generative.rqvae import RQVAEModel
from trainhub.models.generative.sasrec import SASRecModel
from trainhub.nn.hstu import RelativeBucketedTimeAndPositionBias, RelPosBias

__all__ = [
    "HSTUModel",
    "SASRecModel",
    "HLLMModel",
    "NextItemModel",
    "VocabMask",
    "RelPosBias",
    "RelativeBucketedTimeAndPositionBias",
    "load_item_embeddings",
    "score_items",
    "example_batch",
    "RQVAEModel",
    "VectorQuantizer",
    "ResidualVectorQuantizer",
    "TIGERModel",
    "tiger_config",
]


def __getattr__(name: str):
    """``TIGERModel`` needs ``transformers`` (extra ``text``): imported only when asked for."""
    if name in ("TIGERModel", "tiger_config"):
        from trainhub.models.generative import tiger

        return getattr(tiger, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
