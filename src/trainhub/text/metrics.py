"""Metrics per head type (upstream names and signatures, with the documented behaviour).

* classification: accuracy, weighted precision/recall/F1 (``precision``, ``recall``, ``f1``, as
  upstream) plus ``macro_precision``, ``macro_recall``, ``macro_f1`` (scikit-learn).
* multi-label: sigmoid probabilities thresholded (upstream thresholded raw logits); micro
  P/R/F1, ``macro_f1`` and exact-match ``accuracy``.
* NER: **entity-level** P/R/F1 with seqeval (micro over entities, conlleval rules), which is what
  the upstream docs promised; ``accuracy`` is token accuracy over labelled (first sub-token) positions.
* regression: ``mse``, ``mae`` (and ``rmse``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "compute_classification_metrics",
    "compute_multi_label_metrics",
    "compute_ner_metrics",
    "compute_regression_metrics",
]

IGNORE_INDEX = -100


def _as_ids(predictions: np.ndarray) -> np.ndarray:
    predictions = np.asarray(predictions)
    return predictions.argmax(axis=-1) if predictions.ndim == 2 else predictions


def compute_classification_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Single-label metrics from logits ``[N, C]`` (or predicted ids ``[N]``) and gold ids ``[N]``."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    pred, gold = _as_ids(predictions), np.asarray(labels)
    if gold.size == 0:
        return {}
    out = {"accuracy": float(accuracy_score(gold, pred))}
    for avg, prefix in (("weighted", ""), ("macro", "macro_")):
        p, r, f, _ = precision_recall_fscore_support(gold, pred, average=avg, zero_division=0)
        out.update({f"{prefix}precision": float(p), f"{prefix}recall": float(r), f"{prefix}f1": float(f)})
    return out


def compute_multi_label_metrics(predictions: np.ndarray, labels: np.ndarray,
                                threshold: float = 0.5) -> dict[str, float]:
    """Multi-label metrics from logits ``[N, L]`` and 0/1 targets ``[N, L]``; a label is predicted
    when ``sigmoid(logit) > threshold``."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    logits, gold = np.asarray(predictions, dtype=np.float64), np.asarray(labels).astype(int)
    if gold.size == 0:
        return {}
    pred = (1.0 / (1.0 + np.exp(-logits)) > threshold).astype(int)
    p, r, f, _ = precision_recall_fscore_support(gold, pred, average="micro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, pred)),  # exact match of the whole label set
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
    }


def ner_sequences(predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                  label_map: Mapping[int, str]) -> tuple[list[list[str]], list[list[str]]]:
    """Tag-name sequences with the -100 positions (sub-tokens, specials, padding) dropped."""
    pred_seqs, gold_seqs = [], []
    for pred, gold in zip(predictions, labels):
        pred, gold = _as_ids(np.asarray(pred)), np.asarray(gold)
        keep = gold != IGNORE_INDEX
        pred_seqs.append([label_map[int(i)] for i in pred[keep]])
        gold_seqs.append([label_map[int(i)] for i in gold[keep]])
    return pred_seqs, gold_seqs


def compute_ner_metrics(predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                        label_map: Mapping[int, str]) -> dict[str, float]:
    """Entity-level NER metrics.

    Args:
        predictions: one array per sequence, logits ``[T, C]`` or ids ``[T]`` (lengths may differ).
        labels: gold ids ``[T]`` per sequence, -100 where there is no word start.
        label_map: id -> IOB2 tag.
    """
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    pred_seqs, gold_seqs = ner_sequences(predictions, labels, label_map)
    if not any(gold_seqs):
        return {}
    return {
        "accuracy": float(accuracy_score(gold_seqs, pred_seqs)),
        "precision": float(precision_score(gold_seqs, pred_seqs, zero_division=0)),
        "recall": float(recall_score(gold_seqs, pred_seqs, zero_division=0)),
        "f1": float(f1_score(gold_seqs, pred_seqs, zero_division=0)),
    }


def compute_regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean squared / absolute error over all outputs."""
    pred = np.asarray(predictions, dtype=np.float64).reshape(len(predictions), -1)
    gold = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    if gold.size == 0:
        return {}
    mse = float(np.mean((pred - gold) ** 2))
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(pred - gold)))}
