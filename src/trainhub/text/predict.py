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
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from trainhub.engine.checkpoint import load_weights
from trainhub.text.checkpoint import WEIGHTS_NAME
from trainhub.text.config import ExperimentConfig, TaskConfig, load_experiment_config
from trainhub.text.model import MultiTaskModel, import_transformers
from trainhub.text.processing import TaskCollator
from trainhub.text.readers import split_words

__all__ = ["Predictor", "load_predictor", "tags_to_spans"]


def tags_to_spans(tags: Sequence[str], offsets: Sequence[tuple], text: str,
                  scores: Optional[Sequence[float]] = None) -> List[Dict[str, Any]]:
    """IOB2 word tags -> ``[{"entity", "start", "end", "text", "score"}]`` character spans.

    An ``I-X`` that does not continue an ``X`` entity starts a new one (conlleval's lenient rule).
    """
    spans: List[Dict[str, Any]] = []
    current: Optional[Dict[str, Any]] = None
    for i, tag in enumerate(tags):
        kind, ent = (tag[0], tag[2:]) if tag != "O" else ("O", "")
        if kind == "O" or kind == "B" or current is None or current["entity"] != ent:
            if current is not None:
                spans.append(current)
            current = None
            if kind != "O":
                current = {"entity": ent, "start": offsets[i][0], "end": offsets[i][1], "_scores": []}
        else:
            current["end"] = offsets[i][1]
        if current is not None and scores is not None:
            current["_scores"].append(float(scores[i]))
    if current is not None:
        spans.append(current)
    for span in spans:
        vals = span.pop("_scores")
        span["text"] = text[span["start"]:span["end"]]
        span["score"] = float(sum(vals) / len(vals)) if vals else None
    return spans


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
    def from_pretrained(cls, folder: Union[str, Path], device: str = "cpu") -> "Predictor":
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
    def predict(self, texts: Union[str, Sequence[str]], task: str, batch_size: int = 32) -> Any:
        """Predict for one text or a list.

        Returns per text a dict ``{head_name: result}`` where result is
        ``{"label", "score", "scores"}`` (single-label), ``{"labels", "scores"}`` (multi-label),
        ``{"value"}`` (regression) or a list of entity spans (NER).
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        cfg = self._task(task)
        results: List[Dict[str, Any]] = []
        for start in range(0, len(texts), batch_size):
            results.extend(self._predict_batch(texts[start:start + batch_size], cfg))
        return results[0] if single else results

    def _predict_batch(self, texts: List[str], cfg: TaskConfig) -> List[Dict[str, Any]]:
        max_length = self.config.tokenizer.max_length
        if cfg.type == "ner":
            words = [split_words(t) for t in texts]
            enc = self.tokenizer([[w for w, _, _ in ws] for ws in words], is_split_into_words=True,
                                 truncation=True, max_length=max_length)
        else:
            enc = self.tokenizer(texts, truncation=True, max_length=max_length)
        rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": {}}
                for i in range(len(texts))]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = TaskCollator(cfg.type, pad)(rows)
        out = self.model(input_ids=batch["input_ids"].to(self.device),
                         attention_mask=batch["attention_mask"].to(self.device), task_id=cfg.name)
        results: List[Dict[str, Any]] = [{} for _ in texts]
        for head in cfg.heads:
            names = list(head.labels or [])
            logits = out["logits"][head.name].float().cpu()
            for i, text in enumerate(texts):
                if cfg.type == "single_label_classification":
                    probs = logits[i].softmax(-1)
                    best = int(probs.argmax())
                    results[i][head.name] = {"label": names[best], "score": float(probs[best]),
                                             "scores": {n: float(p) for n, p in zip(names, probs)}}
                elif cfg.type == "multi_label_classification":
                    probs = logits[i].sigmoid()
                    results[i][head.name] = {"labels": [n for n, p in zip(names, probs) if p > head.threshold],
                                             "scores": {n: float(p) for n, p in zip(names, probs)}}
                elif cfg.type == "regression":
                    vals = logits[i].tolist()
                    results[i][head.name] = {"value": vals[0] if len(vals) == 1 else vals}
                else:
                    probs = logits[i].softmax(-1)  # [T, C]
                    tags = ["O"] * len(words[i])
                    scores = [1.0] * len(words[i])
                    prev = None
                    for t, wid in enumerate(enc.word_ids(i)):
                        if wid is not None and wid != prev:  # the word's first sub-token decides
                            k = int(probs[t].argmax())
                            tags[wid], scores[wid] = names[k], float(probs[t, k])
                        prev = wid
                    offsets = [(s, e) for _, s, e in words[i]]
                    results[i][head.name] = tags_to_spans(tags, offsets, text, scores)
        return results


def load_predictor(folder: Union[str, Path], device: str = "cpu") -> Predictor:
    """One-call reload of a saved model folder (see :meth:`Predictor.from_pretrained`)."""
    return Predictor.from_pretrained(folder, device)
