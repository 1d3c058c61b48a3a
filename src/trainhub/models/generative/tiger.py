"""TIGER (Rajput et al. 2023): a T5 encoder-decoder that reads a history of semantic IDs and
generates the next item's semantic ID, token by token.

Torch-RecHub 0.9.0 path: ``torch_rechub.models.generative.tiger.TIGERModel``: a ``transformers``
``T5ForConditionalGeneration`` with ``set_hyper(temperature)`` and the cross-entropy computed on
``logits / temperature`` (ignoring label -100). Everything else is T5's (``generate``,
``save_pretrained`` / ``from_pretrained``, ``resize_token_embeddings``).

Needs ``transformers`` (extra ``text``); importing this module without it raises an ImportError
that says so. ``import trainhub.models.generative`` does not import it.

Unlike upstream's example, which takes ``t5-small``'s config and tokenizer from the hub,
:func:`tiger_config` builds the paper's small configuration locally for a
:class:`~trainhub.data.SemanticIDTokenizer`, so training from scratch needs no download.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

try:
    from transformers import T5Config, T5ForConditionalGeneration
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("TIGERModel needs the transformers package: pip install 'trainhub[text]'") from err

__all__ = ["TIGERModel", "tiger_config"]

IGNORE_INDEX = -100


def tiger_config(tokenizer: Any = None, *, vocab_size: int | None = None, d_model: int = 128, d_ff: int = 1024,
                 d_kv: int = 64, num_heads: int = 6, num_layers: int = 4, num_decoder_layers: int | None = None,
                 dropout_rate: float = 0.1, **overrides: Any) -> T5Config:
    """A ``T5Config`` for TIGER trained from scratch (the paper's sizes by default: 4 encoder and
    4 decoder layers, 6 heads of 64, model width 128, feed-forward 1024, dropout 0.1).

    Args:
        tokenizer: gives ``vocab_size`` (its ``len``) and the pad / EOS / decoder-start ids.
        vocab_size: when there is no tokenizer (pad 0, EOS 1, decoder start 0 as T5).
        **overrides: any other ``T5Config`` field.
    """
    if tokenizer is None and vocab_size is None:
        raise ValueError("tiger_config needs a tokenizer or vocab_size")
    pad = getattr(tokenizer, "pad_token_id", 0) if tokenizer is not None else 0
    eos = getattr(tokenizer, "eos_token_id", 1) if tokenizer is not None else 1
    fields = dict(vocab_size=len(tokenizer) if vocab_size is None else vocab_size, d_model=d_model, d_ff=d_ff,
                  d_kv=d_kv, num_heads=num_heads, num_layers=num_layers,
                  num_decoder_layers=num_layers if num_decoder_layers is None else num_decoder_layers,
                  dropout_rate=dropout_rate, feed_forward_proj="relu", pad_token_id=pad, eos_token_id=eos,
                  decoder_start_token_id=pad, tie_word_embeddings=True)
    fields.update(overrides)
    return T5Config(**fields)


class TIGERModel(T5ForConditionalGeneration):
    """T5 for generative retrieval over semantic IDs, with a temperature-scaled training loss.

    Args:
        config: a ``T5Config`` (:func:`tiger_config` builds one without downloads). Weights start
            random, as in the paper: semantic IDs are not natural language.

    Example:
        >>> tokenizer = SemanticIDTokenizer(train_data.get_new_tokens())
        >>> model = TIGERModel(tiger_config(tokenizer))
        >>> model.set_hyper(temperature=1.0)
        >>> loss = model(**collate(batch)).loss
    """

    # The loss is a mean over label tokens that ignores transformers.Trainer's num_items_in_batch:
    # saying so makes that Trainer divide it by the gradient-accumulation steps itself.
    accepts_loss_kwargs = False

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.temperature = 1.0

    def set_hyper(self, temperature: float) -> None:
        """Set the temperature that divides the logits in the training loss."""
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def ranking_loss(self, lm_logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
        """Mean cross-entropy of ``lm_logits [B, T, V] / temperature`` against ``labels [B, T]``."""
        if labels is None:
            return None
        logits = lm_logits / self.temperature
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.to(logits.device).reshape(-1),
                               ignore_index=IGNORE_INDEX)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: Any = None, past_key_values: Any = None, inputs_embeds: torch.Tensor | None = None,
                decoder_inputs_embeds: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                use_cache: bool | None = None, return_dict: bool | None = None, **kwargs: Any) -> Any:
        """T5's forward; with ``labels [B, T]`` the loss is the temperature-scaled cross-entropy.

        Upstream's extra arguments ``whole_word_ids``, ``reduce_loss`` and ``return_hidden_state``
        are accepted and ignored, as there (and ``transformers.Trainer``'s ``num_items_in_batch``).
        """
        for unused in ("whole_word_ids", "reduce_loss", "return_hidden_state", "num_items_in_batch"):
            kwargs.pop(unused, None)
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self._shift_right(labels)  # teacher forcing, as T5 does for its own loss
        # T5 computes no loss without labels; this one computes its own below.
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                              decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                              past_key_values=past_key_values, inputs_embeds=inputs_embeds,
                              decoder_inputs_embeds=decoder_inputs_embeds, labels=None, use_cache=use_cache,
                              return_dict=True, **kwargs)
        if labels is not None:
            # rebuilt rather than assigned, so the loss comes first in to_tuple() as in T5's output
            out = type(out)(loss=self.ranking_loss(out.logits, labels), **dict(out))
        if not (return_dict if return_dict is not None else getattr(self.config, "return_dict", True)):
            return out.to_tuple()
        return out
