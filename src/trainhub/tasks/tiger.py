"""TIGER generative retrieval as a Task: teacher-forced seq2seq loss for training, constrained
beam search for validation (HR@K, NDCG@K and MRR@K of the held-out item).

Batches are what :meth:`trainhub.data.TigerSeqDataset.get_collate_fn` yields: ``{"input_ids"
[B, T], "attention_mask" [B, T], "labels" [B, S]}`` (labels padded with -100). The model is a
:class:`~trainhub.models.generative.tiger.TIGERModel` (any ``transformers`` seq2seq model with
``generate`` works).

Beam search is constrained by a trie of every item's token sequence, so every recommendation is an
existing item; beams are ranked by their scores, as upstream's ``run_tiger_*`` test loop.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from trainhub.data.semantic_tokens import Trie
from trainhub.engine.runtime import unwrap_model
from trainhub.engine.task import StepOutput

__all__ = ["TIGERTask", "DEFAULT_TIGER_KS"]

log = logging.getLogger(__name__)

DEFAULT_TIGER_KS = (1, 5, 10)
IGNORE_INDEX = -100
NO_ITEM = -1


class TIGERTask:
    """Train TIGER and evaluate it by generating items.

    Args:
        tokenizer: the tokenizer of the batches (``encode``, ``pad_token_id``, ``eos_token_id``),
            e.g. :class:`~trainhub.data.SemanticIDTokenizer`.
        indices: ``{item_id: [token, ...]}``, the semantic ID of every item that may be
            recommended (``dataset.indices``).
        num_beams: beams of the constrained search; also the number of items generated per user.
        ks: cut-offs of ``hr@K``, ``ndcg@K`` and ``mrr@K`` (each ``<= num_beams``).
        max_new_tokens: longest generation (default: the longest item sequence, EOS included).

    Raises:
        ValueError: ``num_beams`` larger than the number of distinct items, or a K larger than
            ``num_beams``.

    Example:
        >>> task = TIGERTask.from_dataset(valid_data, tokenizer, num_beams=10, ks=(5, 10))
        >>> fit(model, task, optimizer, train_loader, valid_loader, stopper=EarlyStopping("ndcg@10", "max", 5))
        >>> task.recommend(model, [["12", "7", "3"]], k=10)   # item ids, best first
    """

    def __init__(self, tokenizer: Any, indices: Mapping[Any, Sequence[str]], num_beams: int = 20,
                 ks: Sequence[int] = DEFAULT_TIGER_KS, max_new_tokens: int | None = None):
        self.tokenizer = tokenizer
        self.indices = {str(k): list(v) for k, v in indices.items()}
        self.ks = tuple(sorted(set(ks)))
        if not self.ks or any(not isinstance(k, int) or k < 1 for k in self.ks):
            raise ValueError(f"ks must be positive integers, got {ks!r}")
        self.start_id = getattr(tokenizer, "decoder_start_token_id", None) or tokenizer.pad_token_id or 0
        self.eos_id = tokenizer.eos_token_id
        self.item_ids: list[str] = []
        self.code_to_item: dict[tuple[int, ...], int] = {}
        sequences = []
        for item, tokens in self.indices.items():
            ids = list(tokenizer.encode("".join(tokens)))
            key = self._key(ids)
            if key in self.code_to_item:
                continue  # an item sharing another's semantic ID cannot be told apart by generation
            self.code_to_item[key] = len(self.item_ids)
            self.item_ids.append(item)
            sequences.append([self.start_id] + ids)
        duplicates = len(self.indices) - len(self.item_ids)
        if duplicates:
            log.warning("%d items share a semantic ID with another item; generation can only return the first of "
                        "each (generate IDs with RQVAEModel.generate_semantic_ids(..., extra_level=True))", duplicates)
        if num_beams > len(self.item_ids):
            raise ValueError(f"num_beams={num_beams} is larger than the {len(self.item_ids)} distinct items: beam "
                             "search would have to return items that do not exist; lower num_beams")
        if self.ks[-1] > num_beams:
            raise ValueError(f"K={self.ks[-1]} in ks is larger than num_beams={num_beams}: only num_beams items are "
                             "generated per user; raise num_beams or lower K")
        self.num_beams = num_beams
        self.trie = Trie(sequences)
        self.max_new_tokens = max_new_tokens or max(len(s) - 1 for s in sequences)
        self.reset()

    @classmethod
    def from_dataset(cls, dataset: Any, tokenizer: Any, **kwargs: Any) -> "TIGERTask":
        """A task over every item of a :class:`~trainhub.data.TigerSeqDataset`'s ``indices``."""
        return cls(tokenizer, dataset.indices, **kwargs)

    def _key(self, ids: Sequence[int]) -> tuple[int, ...]:
        """Token ids without padding, EOS, decoder start or ignored positions: one item's code."""
        drop = {IGNORE_INDEX, self.tokenizer.pad_token_id, self.eos_id, self.start_id}
        return tuple(int(i) for i in ids if int(i) not in drop)

    def _allowed(self, batch_id: int, sentence: torch.Tensor) -> list[int]:
        # A beam that left the trie (possible only for beams of score -inf when fewer prefixes than
        # beams exist) is closed with EOS: transformers rejects an empty list.
        return self.trie.get(sentence.tolist()) or [self.eos_id]

    # -- generation ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 k: int | None = None) -> torch.Tensor:
        """Top-``k`` items ``[B, k]`` (positions in :attr:`item_ids`, best first; -1 where fewer
        than ``k`` valid items were found) for each encoder input row."""
        k = k or self.num_beams
        if k > self.num_beams:
            raise ValueError(f"k={k} is larger than num_beams={self.num_beams}")
        net = unwrap_model(model)
        out = net.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=self.max_new_tokens,
                           num_beams=self.num_beams, num_return_sequences=self.num_beams, early_stopping=True,
                           prefix_allowed_tokens_fn=self._allowed, output_scores=True, return_dict_in_generate=True,
                           use_cache=True, decoder_start_token_id=self.start_id,
                           pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_id)
        batch = input_ids.shape[0]
        sequences = out.sequences.view(batch, self.num_beams, -1).cpu()
        scores = out.sequences_scores.view(batch, self.num_beams).float().cpu()
        order = scores.argsort(dim=1, descending=True)
        top = torch.full((batch, k), NO_ITEM, dtype=torch.long)
        for row in range(batch):
            found = []
            for beam in order[row].tolist():
                item = self.code_to_item.get(self._key(sequences[row, beam].tolist()), NO_ITEM)
                if item != NO_ITEM and math.isfinite(float(scores[row, beam])) and item not in found:
                    found.append(item)
                if len(found) == k:
                    break
            top[row, :len(found)] = torch.tensor(found, dtype=torch.long)
        return top

    def recommend(self, model: nn.Module, histories: Sequence[Sequence[Any]], k: int = 10,
                  max_his_len: int | None = None) -> list[list[str]]:
        """The ``k`` best item ids after each history of item ids (oldest first), best first."""
        texts = []
        for history in histories:
            history = list(history)[-max_his_len:] if max_his_len else list(history)
            missing = [i for i in history if str(i) not in self.indices]
            if missing:
                raise KeyError(f"items {missing[:10]} have no semantic ID in this task's indices")
            texts.append("".join("".join(self.indices[str(i)]) for i in history))
        enc = self.tokenizer(texts, return_tensors="pt", padding="longest", truncation=True,
                             max_length=getattr(self.tokenizer, "model_max_length", None))
        device = next(unwrap_model(model).parameters()).device
        was_training = model.training
        model.eval()
        try:
            top = self.generate(model, enc["input_ids"].to(device), enc["attention_mask"].to(device), k)
        finally:
            model.train(was_training)
        return [[self.item_ids[i] for i in row if i != NO_ITEM] for row in top.tolist()]

    # -- Task protocol ---------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> StepOutput:
        out = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), labels=batch["labels"])
        return StepOutput(out.loss, batch_size=batch["input_ids"].shape[0])

    @torch.no_grad()
    def validation_step(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> None:
        input_ids, mask, labels = batch["input_ids"], batch.get("attention_mask"), batch["labels"]
        n = input_ids.shape[0]
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        self.sums["loss"] += float(loss) * n
        top = self.generate(model, input_ids, mask, self.ks[-1])  # [B, K]
        targets = torch.tensor([self.code_to_item.get(self._key(row), NO_ITEM - 1) for row in labels.tolist()])
        hits = top == targets.unsqueeze(1)  # an unknown target (-2) never hits
        found = hits.any(dim=1)
        rank = hits.double().argmax(dim=1)
        for k in self.ks:
            hit = found & (rank < k)
            self.sums[f"hr@{k}"] += float(hit.sum())
            self.sums[f"ndcg@{k}"] += float((hit / torch.log2(rank + 2)).sum())
            self.sums[f"mrr@{k}"] += float((hit / (rank + 1)).sum())
        self.rows += n

    def reset(self) -> None:
        self.sums = {name: 0.0 for name in self.metric_names()}
        self.rows = 0

    def metric_names(self) -> list[str]:
        return ["loss"] + [f"{m}@{k}" for k in self.ks for m in ("hr", "ndcg", "mrr")]

    def higher_is_better(self, name: str) -> bool | None:
        if name not in self.metric_names():
            return None
        return name != "loss"

    def sync_metrics(self, gather: Callable[[Any], list[Any]]) -> None:
        parts = gather((self.sums, self.rows))
        self.sums = {k: sum(p[0][k] for p in parts) for k in self.sums}
        self.rows = sum(p[1] for p in parts)

    def compute_metrics(self) -> dict[str, float]:
        metrics = {k: v / self.rows if self.rows else float("nan") for k, v in self.sums.items()}
        self.reset()
        return metrics
