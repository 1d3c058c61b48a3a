"""Text task kinds: one object per kind of task owns everything that differs between kinds.

A kind says how a data row becomes an example, how labels are discovered and encoded, how a batch
of labels is padded, how validation outputs are collected and scored (and under which metric
names, in which direction), and how a prediction is decoded. The processing, objective,
prediction and config modules ask the kind instead of branching on the task's type string, and
the model builds the heads the kind names (:attr:`TaskKind.heads`). A new kind of task is one
class, made known with :func:`register_kind`; it can reuse a heads module of
:mod:`trainhub.text.heads` by name or bring its own ``nn.Module`` class.

Kinds read task and head configs by attribute only; this module imports no other part of
``trainhub.text`` but the metric functions and the word splitter, so the config can import it.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Sequence

import numpy as np

from trainhub.text.metrics import (
    IGNORE_INDEX,
    compute_classification_metrics,
    compute_multi_label_metrics,
    compute_ner_metrics,
    compute_regression_metrics,
)
from trainhub.text.readers import char_spans_to_iob2, split_words

__all__ = [
    "TaskKind",
    "SingleLabelKind",
    "MultiLabelKind",
    "NERKind",
    "RegressionKind",
    "KINDS",
    "register_kind",
    "lower_is_better",
    "TASK_TYPES",
    "TYPE_ALIASES",
    "LOWER_IS_BETTER",
    "kind_for",
    "align_labels_to_tokens",
    "ner_label_list",
    "to_iob2",
    "is_int_label",
    "tags_to_spans",
]

log = logging.getLogger(__name__)


def is_int_label(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v.strip().lstrip("-").isdigit())


def to_iob2(tags: list[str]) -> list[str]:
    """Make a tag sequence valid IOB2: plain types (``PER``) and IOB1-style leading ``I-`` become ``B-``."""
    out, prev = [], "O"
    for tag in tags:
        if tag == "O":
            out.append(tag)
        else:
            kind, _, ent = tag.partition("-") if tag[:2] in ("B-", "I-") else ("", "", tag)
            if kind == "I" and prev in (f"B-{ent}", f"I-{ent}"):
                out.append(tag)
            elif kind == "" and prev in (f"B-{ent}", f"I-{ent}"):
                out.append(f"I-{ent}")
            else:
                out.append(f"B-{ent}")
        prev = out[-1]
    return out


def ner_label_list(tags: Sequence[str]) -> list[str]:
    """``O`` then ``B-X``, ``I-X`` for every entity type X, types sorted."""
    types = sorted({t[2:] for t in tags if t != "O"})
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def align_labels_to_tokens(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Token labels: each word's label on its first sub-token, -100 on the rest and on specials.

    Example:
        >>> align_labels_to_tokens([None, 0, 0, 1, None], [3, 0])
        [-100, 3, -100, 0, -100]
    """
    out, prev = [], None
    for wid in word_ids:
        out.append(IGNORE_INDEX if wid is None or wid == prev else int(word_labels[wid]))
        prev = wid
    return out


def tags_to_spans(tags: Sequence[str], offsets: Sequence[tuple], text: str,
                  scores: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """IOB2 word tags -> ``[{"entity", "start", "end", "text", "score"}]`` character spans.

    An ``I-X`` that does not continue an ``X`` entity starts a new one (conlleval's lenient rule).
    """
    spans: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
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


def _text_of(row: dict[str, Any], task: Any, where: str) -> str:
    if task.text_column in row:
        text = row[task.text_column]
    else:
        # AfriSenti-style files name the text column differently: take the one non-label column.
        others = [k for k in row if k not in ("_row", task.label_column, "label", "labels")]
        if len(others) != 1:
            fields = sorted(k for k in row if k != "_row")
            raise ValueError(f"{where}: no {task.text_column!r} field (fields: {fields}); "
                             f"set the task's text_column")
        text = row[others[0]]
    if not isinstance(text, str):
        raise ValueError(f"{where}: text must be a string, got {text!r}")
    return text


class TaskKind:
    """A sentence-level kind of task; subclasses override what differs.

    Attributes:
        name: the canonical task type in configs.
        aliases: other accepted spellings of ``name``.
        metric_names: the keys its metric function returns for one head, in order.
        lower_is_better: those of ``metric_names`` for which lower values are better.
        token_level: labels are per token (padded with -100) rather than per row.
        label_dtype: ``"long"`` (class ids) or ``"float32"`` (multi-hot vectors, targets).
        single_head: a task of this kind takes exactly one head.
        heads: its heads module: a class, or the name of one in :mod:`trainhub.text.heads`
            (built as ``heads(task_config, hidden_size, dropout=..., pooling=...)``).
    """

    name = ""
    aliases: tuple[str, ...] = ()
    heads: str | type = ""
    metric_names: tuple[str, ...] = ()
    lower_is_better: frozenset[str] = frozenset()
    token_level = False
    label_dtype = "float32"
    single_head = False

    def higher_is_better(self, metric: str) -> bool | None:
        """Direction of one of :attr:`metric_names`; None for a name this kind does not produce."""
        if metric not in self.metric_names:
            return None
        return metric not in self.lower_is_better

    # -- examples ---------------------------------------------------------------------------
    def example(self, row: dict[str, Any], task: Any, where: str) -> dict[str, Any] | None:
        """``{"text", "labels": {head: raw label}}`` from one reader row (None skips the row)."""
        head_names = [h.name for h in task.heads]
        ex: dict[str, Any] = {"text": _text_of(row, task, where)}
        value = row.get(task.label_column, row.get("labels"))
        if value is None:
            raise ValueError(f"{where}: missing label field {task.label_column!r} (or 'labels')")
        value = self.parse_cell(value)
        if isinstance(value, dict):
            missing = [h for h in head_names if h not in value]
            if missing:
                raise ValueError(f"{where}: label dict lacks heads {missing}")
            ex["labels"] = {h: value[h] for h in head_names}
        else:
            self.check_shared_label(task, where)
            # One label feeds every head (upstream behaviour for multi-head classification).
            ex["labels"] = {h: value for h in head_names}
        return ex

    def parse_cell(self, value: Any) -> Any:
        """A raw label value as the reader gave it -> the value to encode."""
        return value

    def check_shared_label(self, task: Any, where: str) -> None:
        """Raise when one label for every head makes no sense for this kind."""

    # -- label inventory --------------------------------------------------------------------
    def raw_labels(self, value: Any) -> list[str]:
        """The label names one example's value holds (none for vectors and regression targets)."""
        return []

    def declared_labels(self, task: Any) -> list[str] | None:
        """A task-level label inventory, where the kind has one."""
        return None

    def is_id_of(self, label: str, names: Sequence[str]) -> bool:
        """Whether ``label`` may stand for a class by its id into ``names``."""
        return False

    def infer_labels(self, head: Any, values: list[Any], seen: dict[str, list[Any]],
                     examples: list[dict[str, Any]], task: Any) -> list[str]:
        """The label inventory of ``head`` from the training ``values`` (``seen``: counted names)."""
        raise NotImplementedError

    def unseen_labels(self, seen: dict[str, list[Any]], known: set[str]) -> list[str]:
        """Names among ``seen`` (eval/test labels) that the head's inventory ``known`` lacks."""
        return [v for v in seen if v not in known]

    def encode_label(self, head_name: str, value: Any, names: list[str], where: str) -> Any:
        raise NotImplementedError

    # -- tokens -----------------------------------------------------------------------------
    def tokenize_examples(self, tokenizer: Any, examples: list[dict[str, Any]], truncation: bool,
                          max_length: int) -> Any:
        return tokenizer([ex["text"] for ex in examples], truncation=truncation, max_length=max_length)

    def align(self, word_ids: Sequence[int | None], encoded: Any) -> Any:
        """An encoded label as it sits beside the tokens."""
        return encoded

    def tokenize_texts(self, tokenizer: Any, texts: list[str], max_length: int) -> tuple[Any, list[Any]]:
        """Encodings of raw texts for prediction, and what decoding needs per text."""
        return tokenizer(texts, truncation=True, max_length=max_length), [None] * len(texts)

    # -- validation -------------------------------------------------------------------------
    def scorable(self, target: Any, num_classes: int) -> Any:
        """Labels for the loss: ids of labels the head has no class for are ignored (-100)."""
        return target.masked_fill(target >= num_classes, IGNORE_INDEX)

    def collect(self, logits: Any, gold: np.ndarray, preds: list, golds: list) -> None:
        """Append one batch's CPU logits and gold labels to the per-head lists."""
        preds.append(logits.numpy())
        golds.append(gold)

    def score(self, preds: list, golds: list, head: Any, names: list[str]) -> dict[str, float]:
        """The head's metrics (keys among :attr:`metric_names`) from everything collected."""
        raise NotImplementedError

    # -- prediction -------------------------------------------------------------------------
    def decode(self, logits: Any, head: Any, names: list[str], text: str, words: Any,
               word_ids: Sequence[int | None]) -> Any:
        """One text's prediction for ``head`` from its logits."""
        raise NotImplementedError


class SingleLabelKind(TaskKind):
    """One class per row (softmax head): weighted and macro precision/recall/F1, accuracy."""

    name = "single_label_classification"
    aliases = ("classification", "single_label")
    heads = "SingleLabelClassificationHeads"
    metric_names = ("accuracy", "precision", "recall", "f1", "macro_precision", "macro_recall", "macro_f1")
    label_dtype = "long"

    def raw_labels(self, value: Any) -> list[str]:
        return [str(value)]

    def is_id_of(self, label: str, names: Sequence[str]) -> bool:
        return is_int_label(label) and 0 <= int(label) < len(names)

    def infer_labels(self, head, values, seen, examples, task) -> list[str]:
        if values and all(is_int_label(v) for v in values):
            top = max(int(v) for v in values) + 1
            if head.num_labels and top > head.num_labels:
                bad = next(ex for ex in examples if int(ex["labels"][head.name]) >= head.num_labels)
                value = str(bad["labels"][head.name])
                raise ValueError(f"{bad.get('where', '?')}: label {value!r} of task {task.name!r} head "
                                 f"{head.name!r} is not an id below num_labels={head.num_labels}; fix the row or "
                                 "raise num_labels")
            return [str(i) for i in range(max(top, head.num_labels or 0))]
        return sorted(seen)

    def unseen_labels(self, seen, known) -> list[str]:
        if all(is_int_label(v) for v in seen):
            return [v for v in seen if v not in known and not 0 <= int(v) < len(known)]
        return super().unseen_labels(seen, known)

    def encode_label(self, head_name, value, names, where) -> int:
        index = {n: i for i, n in enumerate(names)}
        if str(value) in index:
            return index[str(value)]
        if is_int_label(value) and 0 <= int(value) < len(names):
            return int(value)  # an id into explicitly named labels
        raise ValueError(f"{where}: label {value!r} of head {head_name!r} is not one of {names}")

    def score(self, preds, golds, head, names) -> dict[str, float]:
        return compute_classification_metrics(np.concatenate(preds), np.concatenate(golds))

    def decode(self, logits, head, names, text, words, word_ids) -> dict[str, Any]:
        probs = logits.softmax(-1)
        best = int(probs.argmax())
        return {"label": names[best], "score": float(probs[best]),
                "scores": {n: float(p) for n, p in zip(names, probs)}}


class MultiLabelKind(TaskKind):
    """Any number of labels per row (sigmoid outputs): micro P/R/F1, macro F1, exact-match accuracy."""

    name = "multi_label_classification"
    aliases = ("multi_label",)
    heads = "MultiLabelClassificationHeads"
    metric_names = ("accuracy", "precision", "recall", "f1", "macro_f1")

    def parse_cell(self, value: Any) -> Any:
        if isinstance(value, str):
            if value.strip().startswith("{"):
                return json.loads(value)  # upstream accepted a JSON string of the per-head dict
            return [v.strip() for v in re.split(r"[|,;]", value) if v.strip()]  # CSV cell: "sports|politics"
        return value

    def check_shared_label(self, task, where) -> None:
        if len(task.heads) > 1:
            raise ValueError(f"{where}: task {task.name!r} has {len(task.heads)} heads, "
                             f"so labels must be a {{head: [...]}} dict")

    def raw_labels(self, value: Any) -> list[str]:
        if isinstance(value, list) and value and isinstance(value[0], str):
            return [str(v) for v in value]
        return []

    def declared_labels(self, task) -> list[str] | None:
        return list(task.labels) if task.labels else None

    def infer_labels(self, head, values, seen, examples, task) -> list[str]:
        if seen:
            return sorted(seen)
        width = head.num_labels or max((len(v) for v in values), default=0)
        return [f"{head.name}_{i}" for i in range(width)]

    def encode_label(self, head_name, value, names, where) -> list[float]:
        if not value:
            return [0.0] * len(names)  # a row with no labels
        if isinstance(value[0], str):
            index = {n: i for i, n in enumerate(names)}
            unknown = [v for v in value if v not in index]
            if unknown:
                raise ValueError(f"{where}: labels {unknown} of head {head_name!r} are not in the inventory {names}")
            hot = [0.0] * len(names)
            for v in value:
                hot[index[v]] = 1.0
            return hot
        if len(value) != len(names):
            raise ValueError(f"{where}: head {head_name!r} expects {len(names)} 0/1 values, got {len(value)}")
        return [float(v) for v in value]

    def scorable(self, target, num_classes):
        return target[:, :num_classes]  # the extra columns are labels the head has no output for

    def collect(self, logits, gold, preds, golds) -> None:
        logits = logits.numpy()
        if gold.shape[-1] > logits.shape[-1]:
            # labels the head has no output for are never predicted: false negatives
            missing = np.full((logits.shape[0], gold.shape[-1] - logits.shape[-1]), -1e9, logits.dtype)
            logits = np.concatenate([logits, missing], axis=-1)
        preds.append(logits)
        golds.append(gold)

    def score(self, preds, golds, head, names) -> dict[str, float]:
        return compute_multi_label_metrics(np.concatenate(preds), np.concatenate(golds), head.threshold)

    def decode(self, logits, head, names, text, words, word_ids) -> dict[str, Any]:
        probs = logits.sigmoid()
        return {"labels": [n for n, p in zip(names, probs) if p > head.threshold],
                "scores": {n: float(p) for n, p in zip(names, probs)}}


class RegressionKind(TaskKind):
    """Real-valued targets (linear outputs): MSE, RMSE, MAE, all lower-is-better."""

    name = "regression"
    heads = "RegressionHeads"
    metric_names = ("mse", "rmse", "mae")
    lower_is_better = frozenset(metric_names)

    def infer_labels(self, head, values, seen, examples, task) -> list[str]:
        width = head.num_labels or (len(values[0]) if values and isinstance(values[0], list) else 1)
        return [head.name] if width == 1 else [f"{head.name}_{i}" for i in range(width)]

    def encode_label(self, head_name, value, names, where) -> list[float]:
        vals = value if isinstance(value, list) else [value]
        if len(vals) != len(names):
            raise ValueError(f"{where}: head {head_name!r} expects {len(names)} values, got {value!r}")
        try:
            return [float(v) for v in vals]
        except (TypeError, ValueError):
            raise ValueError(f"{where}: regression target {value!r} is not a number") from None

    def score(self, preds, golds, head, names) -> dict[str, float]:
        return compute_regression_metrics(np.concatenate(preds), np.concatenate(golds))

    def decode(self, logits, head, names, text, words, word_ids) -> dict[str, Any]:
        vals = logits.tolist()
        return {"value": vals[0] if len(vals) == 1 else vals}


class NERKind(TaskKind):
    """IOB2 tags per word, on each word's first sub-token: entity-level P/R/F1, token accuracy."""

    name = "ner"
    aliases = ("token_classification",)
    heads = "NERHead"
    metric_names = ("accuracy", "precision", "recall", "f1")
    token_level = True
    label_dtype = "long"
    single_head = True

    def example(self, row, task, where) -> dict[str, Any] | None:
        ex = self._words_and_tags(row, where)
        if ex is None:
            return None
        return {"words": ex["words"], "labels": {task.heads[0].name: ex["tags"]}}

    @staticmethod
    def _words_and_tags(row: dict[str, Any], where: str) -> dict[str, Any] | None:
        """Words and tags of one row, or None (with a warning) when they do not match."""
        if "words" in row or "tokens" in row:
            words = row.get("words", row.get("tokens"))
            tags = row.get("tags", row.get("ner_tags", row.get("labels")))
            if tags is None:
                raise ValueError(f"{where}: token rows need 'tags' (or 'ner_tags')")
            if len(tags) != len(words):
                log.warning("%s: %d tokens but %d tags; row skipped", where, len(words), len(tags))
                return None
            return {"words": [str(w) for w in words], "tags": to_iob2([str(t) for t in tags])}
        if "entities" in row:
            text = row.get("text")
            if not isinstance(text, str):
                raise ValueError(f"{where}: NER rows with 'entities' need a string 'text'")
            words, tags, _ = char_spans_to_iob2(text, row["entities"], where)
            return {"words": words, "tags": tags}
        if "text" in row and isinstance(row.get("labels"), str):
            # CSV form: "text","B-PER I-PER O ..." with one tag per whitespace token.
            words, tags = row["text"].split(), row["labels"].split()
            if len(words) != len(tags):
                # The upstream sample examples/ner_data.csv has two such rows.
                log.warning("%s: %d words but %d tags; row skipped", where, len(words), len(tags))
                return None
            return {"words": words, "tags": to_iob2(tags)}
        raise ValueError(f"{where}: a NER row needs 'text' + 'entities', 'tokens' + 'tags', or CoNLL lines; "
                         f"got fields {sorted(k for k in row if k != '_row')}")

    def raw_labels(self, value: Any) -> list[str]:
        return [str(t) for t in value]

    def infer_labels(self, head, values, seen, examples, task) -> list[str]:
        return ner_label_list(list(seen))

    def unseen_labels(self, seen, known) -> list[str]:
        # an I- tag of a known type is known; an unknown type brings B- and I-
        unseen = ner_label_list([v for v in seen if v not in known])[1:]
        return [t for t in unseen if t not in known]

    def encode_label(self, head_name, value, names, where) -> list[int]:
        index = {n: i for i, n in enumerate(names)}
        unknown = [t for t in value if t not in index]
        if unknown:
            raise ValueError(f"{where}: tags {sorted(set(unknown))} are not in the label set {names}")
        return [index[t] for t in value]

    def tokenize_examples(self, tokenizer, examples, truncation, max_length) -> Any:
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError("NER needs a fast tokenizer (word_ids() maps sub-tokens to words)")
        return tokenizer([ex["words"] for ex in examples], is_split_into_words=True,
                         truncation=truncation, max_length=max_length)

    def align(self, word_ids, encoded) -> list[int]:
        return align_labels_to_tokens(word_ids, encoded)

    def tokenize_texts(self, tokenizer, texts, max_length) -> tuple[Any, list[Any]]:
        words = [split_words(t) for t in texts]
        enc = tokenizer([[w for w, _, _ in ws] for ws in words], is_split_into_words=True,
                        truncation=True, max_length=max_length)
        return enc, words

    def collect(self, logits, gold, preds, golds) -> None:
        ids = logits.argmax(-1).numpy()  # [B, T]; rows are ragged after trimming
        for row_pred, row_gold in zip(ids, gold):
            keep = row_gold != IGNORE_INDEX
            preds.append(row_pred[keep])
            golds.append(row_gold[keep])

    def score(self, preds, golds, head, names) -> dict[str, float]:
        return compute_ner_metrics(preds, golds, dict(enumerate(names)))

    def decode(self, logits, head, names, text, words, word_ids) -> list[dict[str, Any]]:
        probs = logits.softmax(-1)  # [T, C]
        tags = ["O"] * len(words)
        scores = [1.0] * len(words)
        prev = None
        for t, wid in enumerate(word_ids):
            if wid is not None and wid != prev:  # the word's first sub-token decides
                k = int(probs[t].argmax())
                tags[wid], scores[wid] = names[k], float(probs[t, k])
            prev = wid
        offsets = [(s, e) for _, s, e in words]
        return tags_to_spans(tags, offsets, text, scores)


KINDS: dict[str, TaskKind] = {k.name: k for k in (SingleLabelKind(), MultiLabelKind(), NERKind(), RegressionKind())}
#: The built-in task types, in the order configs document them (``KINDS`` also holds registered ones).
TASK_TYPES = tuple(KINDS)
#: Other spellings accepted in configs (upstream's code says ``classification``, its docs
#: ``single_label_classification``).
TYPE_ALIASES = {alias: kind.name for kind in KINDS.values() for alias in kind.aliases}
#: Metric names (the last part of a key) for which lower is better among the built-in kinds.
LOWER_IS_BETTER = frozenset({"loss"}).union(*(k.lower_is_better for k in KINDS.values()))


def register_kind(kind: TaskKind) -> TaskKind:
    """Make a new kind of task usable in configs (its ``name`` and ``aliases``), processing,
    metrics, early stopping and prediction, and give the model its heads. Returns ``kind``."""
    if not kind.name or not kind.heads:
        raise ValueError(f"{type(kind).__name__} needs a name and heads to be registered")
    taken = [n for n in (kind.name, *kind.aliases) if n in KINDS or n in TYPE_ALIASES]
    if taken:
        raise ValueError(f"task type {taken[0]!r} is taken (kinds: {', '.join(KINDS)})")
    KINDS[kind.name] = kind
    TYPE_ALIASES.update({alias: kind.name for alias in kind.aliases})
    return kind


def lower_is_better(key: str) -> bool:
    """Whether lower values are better for a metric key (``eval_<task>_<head>_<metric>``) or
    name, judged by the metric name it ends with (a kind's, or ``loss``) and nothing else: task or
    head names such as "Glossing" must not make an accuracy look like a loss."""
    names = {"loss"}.union(*(k.lower_is_better for k in KINDS.values()))
    return any(key == name or key.endswith("_" + name) for name in names)


def kind_for(task_type: str) -> TaskKind:
    """The kind of a task type (canonical or alias)."""
    name = TYPE_ALIASES.get(task_type, task_type)
    if name not in KINDS:
        raise ValueError(f"unknown task type {task_type!r}; choose from {', '.join(KINDS)}")
    return KINDS[name]
