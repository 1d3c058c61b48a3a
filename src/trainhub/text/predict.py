"""Reload a saved model folder in one call and predict label names and entity spans.

Example:
    >>> predictor = Predictor.from_pretrained("results/best_model")
    >>> predictor.predict(["Rais wa Kenya ni William Ruto"], task="SwahiliNER")
    [{'ner_head': [{'entity': 'PER', 'start': 17, 'end': 29, 'text': 'William Ruto', 'score': 0.93}]}]
    >>> predictor.predict("Huduma nzuri sana", task="Sentiment")
    {'sentiment_head': {'label': 'positive', 'score': 0.81, 'scores': {...}}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from trainhub.engine.checkpoint import load_weights
from trainhub.text.checkpoint import WEIGHTS_NAME
from trainhub.text.config import ExperimentConfig, TaskConfig, load_experiment_config

# tags_to_spans is NER decoding, owned by the NER kind; it stays importable from here.
from trainhub.text.kinds import kind_for, tags_to_spans
from trainhub.text.model import MultiTaskModel, import_transformers
from trainhub.text.processing import TaskCollator

__all__ = ["Predictor", "load_predictor", "tags_to_spans"]


class Predictor:
    """Inference over a :class:`MultiTaskModel`.

    Args:
        model: the trained model.
        tokenizer: its tokenizer.
        config: the experiment config with label names filled in (as saved beside the weights).
        device: where to run.
    """

    def __init__(self, model: MultiTaskModel, tokenizer: Any, config: ExperimentConfig, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.config = config
        self.device = torch.device(device)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "cpu") -> "Predictor":
        """Rebuild encoder, heads and tokenizer from a folder written by the trainer
        (``<output_dir>/best_model``) and load its weights. No original data or encoder needed."""
        folder = Path(folder)
        if not (folder / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME}; pass a folder written by Trainer.train() "
                                    f"(<output_dir>/best_model) or Trainer.save_model()")
        transformers = import_transformers()
        config = load_experiment_config(folder / "experiment_config.yaml")
        encoder = transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(str(folder / "encoder")))
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
        model = MultiTaskModel(model_config=config.model, task_configs=config.tasks, encoder=encoder)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
        load_weights(folder / WEIGHTS_NAME, model)
        return cls(model, tokenizer, config, device)

    def _task(self, name: str) -> TaskConfig:
        return self.config.task(name)

    @torch.no_grad()
    def predict(self, texts: str | Sequence[str], task: str, batch_size: int = 32) -> Any:
        """Predict for one text or a list.

        Returns per text a dict ``{head_name: result}`` where result is
        ``{"label", "score", "scores"}`` (single-label), ``{"labels", "scores"}`` (multi-label),
        ``{"value"}`` (regression) or a list of entity spans (NER).
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        cfg = self._task(task)
        results: list[dict[str, Any]] = []
        for start in range(0, len(texts), batch_size):
            results.extend(self._predict_batch(texts[start:start + batch_size], cfg))
        return results[0] if single else results

    def _predict_batch(self, texts: list[str], cfg: TaskConfig) -> list[dict[str, Any]]:
        kind = kind_for(cfg.type)
        enc, words = kind.tokenize_texts(self.tokenizer, texts, self.config.tokenizer.max_length)
        rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": {}}
                for i in range(len(texts))]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = TaskCollator(cfg.type, pad)(rows)
        out = self.model(input_ids=batch["input_ids"].to(self.device),
                         attention_mask=batch["attention_mask"].to(self.device), task_id=cfg.name)
        results: list[dict[str, Any]] = [{} for _ in texts]
        for head in cfg.heads:
            names = list(head.labels or [])
            logits = out["logits"][head.name].float().cpu()
            for i, text in enumerate(texts):
                word_ids = enc.word_ids(i) if kind.token_level else ()
                results[i][head.name] = kind.decode(logits[i], head, names, text, words[i], word_ids)
        return results


def load_predictor(folder: str | Path, device: str = "cpu") -> Predictor:
    """One-call reload of a saved model folder (see :meth:`Predictor.from_pretrained`)."""
    return Predictor.from_pretrained(folder, device)
