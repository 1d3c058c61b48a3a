"""From files to tokenised datasets: examples per task type, label discovery, alignment, collate.

``DataProcessor(config, tokenizer).process()`` returns ``(train, eval, config)`` as upstream did,
with the config's ``num_labels`` / ``label_maps`` filled in from the data; test datasets (when a
task has ``test_data_path``) are in ``processor.test_datasets``.

Label inventory per head, strict where the config is explicit and loud where it is not:

* **Declared** (``heads[].labels``, ``label_maps``, a multi-label task's ``labels``, or
  ``num_labels``): a label outside it, in any split, is an error naming the file, row and label;
  a ``num_labels`` that the training labels do not match is an error listing them all.
* **Inferred** (nothing declared): the inventory comes from the **training** rows only and is
  logged in full. A label that appears only in eval/test rows is reported by name (with counts
  and its first rows); it gets an id past the head's classes, so every such row counts as an
  error in accuracy/precision/recall/F1 (the model cannot predict it) and is left out of the
  eval loss. It never becomes a class of the head.

Ids: single-label uses the inventory order (integer labels keep their value as id, names ``"0"``,
``"1"``, ...; otherwise label strings sorted); multi-label rows are multi-hot over the inventory
(a ``{head: [0/1, ...]}`` dict per row is used as is); NER tags are IOB2, ids ``O`` then
``B-``/``I-`` of each entity type in sorted order. Only the first sub-token of each word carries
the word's label; other sub-tokens and special tokens get -100 (ignored by the loss and metrics).
"""

from __future__ import annotations

import json
import logging
import random
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

# The label-map files belong with the config they describe; they stay importable from here.
from trainhub.text.config import ExperimentConfig, TaskConfig, load_label_maps, save_label_maps
from trainhub.text.readers import char_spans_to_iob2, read_rows

__all__ = [
    "IGNORE_INDEX",
    "DataProcessor",
    "TextDataset",
    "TaskCollator",
    "align_labels_to_tokens",
    "build_label_maps",
    "held_out_only_labels",
    "classification_collate_fn",
    "ner_collate_fn",
    "ner_label_list",
    "rows_to_examples",
    "save_label_maps",
    "load_label_maps",
    "to_iob2",
]

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


# ----------------------------------------------------------------------------- examples


def _text_of(row: Dict[str, Any], task: TaskConfig, where: str) -> str:
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


def to_iob2(tags: List[str]) -> List[str]:
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


def _ner_example(row: Dict[str, Any], where: str) -> Optional[Dict[str, Any]]:
    """One NER example, or None (with a warning) for a row whose tags do not match its words."""
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


def rows_to_examples(rows: List[Dict[str, Any]], task: TaskConfig, source: str) -> List[Dict[str, Any]]:
    """Turn reader rows into ``{"text"|"words", "labels": {head: raw label}, "where"}`` examples."""
    examples = []
    head_names = [h.name for h in task.heads]
    for row in rows:
        where = f"{source}, row {row.get('_row', '?')}"
        if task.type == "ner":
            ex = _ner_example(row, where)
            if ex is None:
                continue
            ex["labels"] = {head_names[0]: ex.pop("tags")}
        else:
            ex = {"text": _text_of(row, task, where)}
            value = row.get(task.label_column, row.get("labels"))
            if value is None:
                raise ValueError(f"{where}: missing label field {task.label_column!r} (or 'labels')")
            if isinstance(value, str) and task.type == "multi_label_classification":
                if value.strip().startswith("{"):
                    value = json.loads(value)  # upstream accepted a JSON string of the per-head dict
                else:  # CSV/TSV cell: "sports|politics" (also ',' or ';')
                    value = [v.strip() for v in re.split(r"[|,;]", value) if v.strip()]
            if isinstance(value, dict):
                missing = [h for h in head_names if h not in value]
                if missing:
                    raise ValueError(f"{where}: label dict lacks heads {missing}")
                ex["labels"] = {h: value[h] for h in head_names}
            else:
                if task.type == "multi_label_classification" and len(head_names) > 1:
                    raise ValueError(f"{where}: task {task.name!r} has {len(head_names)} heads, "
                                     f"so labels must be a {{head: [...]}} dict")
                # One label feeds every head (upstream behaviour for multi-head classification).
                ex["labels"] = {h: value for h in head_names}
        ex["where"] = where
        examples.append(ex)
    return examples


# ----------------------------------------------------------------------------- labels


def ner_label_list(tags: Sequence[str]) -> List[str]:
    """``O`` then ``B-X``, ``I-X`` for every entity type X, types sorted."""
    types = sorted({t[2:] for t in tags if t != "O"})
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def _is_int_label(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v.strip().lstrip("-").isdigit())


def _declared(task: TaskConfig, head: Any) -> Optional[List[str]]:
    if head.labels:
        return list(head.labels)
    if task.label_maps and head.name in task.label_maps:
        return [task.label_maps[head.name][i] for i in sorted(task.label_maps[head.name])]
    if task.type == "multi_label_classification" and task.labels:
        return list(task.labels)
    return None


def _raw_labels(task: TaskConfig, value: Any) -> List[str]:
    """The label names one example's value holds (none for 0/1 vectors and regression targets)."""
    if task.type == "ner":
        return [str(t) for t in value]
    if task.type == "single_label_classification":
        return [str(value)]
    if task.type == "multi_label_classification" and isinstance(value, list) and value and isinstance(value[0], str):
        return [str(v) for v in value]
    return []


def label_counts(task: TaskConfig, head: str, examples: List[Dict[str, Any]]) -> Dict[str, List[Any]]:
    """``{label: [count, first row's "file, row N"]}`` over ``examples``, in order of appearance."""
    seen: Dict[str, List[Any]] = {}
    for ex in examples:
        for name in _raw_labels(task, ex["labels"][head]):
            entry = seen.setdefault(name, [0, ex.get("where", "?")])
            entry[0] += 1
    return seen


def _describe(seen: Dict[str, List[Any]], names: Sequence[str]) -> str:
    return ", ".join(f"{n!r} ({seen[n][0]}x, first at {seen[n][1]})" for n in names)


def _check_declared(task: TaskConfig, head: Any, names: List[str], examples: List[Dict[str, Any]],
                    how: str) -> None:
    """Every label of every split must be in the declared inventory (integer labels may be ids)."""
    known = set(names)
    for ex in examples:
        for label in _raw_labels(task, ex["labels"][head.name]):
            if label in known:
                continue
            if task.type == "single_label_classification" and _is_int_label(label) and 0 <= int(label) < len(names):
                continue  # an id into explicitly named labels
            raise ValueError(f"{ex.get('where', '?')}: label {label!r} of task {task.name!r} head {head.name!r} is "
                             f"not in the inventory {how} {names}; fix the row, or add the label to the config")


def build_label_maps(task: TaskConfig, examples: List[Dict[str, Any]],
                     held_out: Sequence[Dict[str, Any]] = ()) -> Dict[str, List[str]]:
    """Label names (in id order) per head: the declared inventory, or one inferred from ``examples``
    (the training rows). ``held_out`` (eval/test rows) is checked against a declared inventory.

    Also writes them back into ``task`` (``heads[i].num_labels``, ``heads[i].labels``,
    ``task.label_maps``) so the saved config reproduces the model.

    Raises:
        ValueError: a label outside a declared inventory (naming file, row and label), or a
            ``num_labels`` the training labels do not match (listing them all).
    """
    names: Dict[str, List[str]] = {}
    everything = list(examples) + list(held_out)
    for head in task.heads:
        declared = _declared(task, head)
        values = [ex["labels"][head.name] for ex in examples]
        seen = label_counts(task, head.name, examples)
        if declared is not None:
            found = declared
            if head.num_labels not in (None, 0, len(found)):
                raise ValueError(f"task {task.name!r} head {head.name!r}: num_labels={head.num_labels} but "
                                 f"{len(found)} labels are listed {found}; make them agree")
            _check_declared(task, head, found, everything, "declared in the config")
        elif task.type == "ner":
            found = ner_label_list(list(seen))
        elif task.type == "single_label_classification":
            if values and all(_is_int_label(v) for v in values):
                top = max(int(v) for v in values) + 1
                if head.num_labels and top > head.num_labels:
                    bad = next(ex for ex in examples if int(ex["labels"][head.name]) >= head.num_labels)
                    value = str(bad["labels"][head.name])
                    raise ValueError(f"{bad.get('where', '?')}: label {value!r} of task {task.name!r} head "
                                     f"{head.name!r} is not an id below num_labels={head.num_labels}; fix the row or "
                                     "raise num_labels")
                found = [str(i) for i in range(max(top, head.num_labels or 0))]
            else:
                found = sorted(seen)
        elif task.type == "multi_label_classification":
            if seen:
                found = sorted(seen)
            else:
                width = head.num_labels or max((len(v) for v in values), default=0)
                found = [f"{head.name}_{i}" for i in range(width)]
        else:  # regression
            width = head.num_labels or (len(values[0]) if values and isinstance(values[0], list) else 1)
            found = [head.name] if width == 1 else [f"{head.name}_{i}" for i in range(width)]
        if declared is None and seen:
            if head.num_labels not in (None, 0, len(found)):
                raise ValueError(
                    f"task {task.name!r} head {head.name!r}: num_labels={head.num_labels}, but the training data hold "
                    f"{len(found)} labels {found}: {_describe(seen, list(seen))}. Fix the rows with unexpected labels, "
                    f"or list the labels you mean in heads[].labels (or set num_labels: {len(found)})")
            if head.num_labels:  # an explicit count makes the inferred inventory binding
                _check_declared(task, head, found, everything, f"of num_labels={head.num_labels}")
            else:
                log.warning("task %r head %r: no label inventory in the config; inferred %d labels from the training "
                            "rows: %s. List them in heads[].labels to make any other label an error",
                            task.name, head.name, len(found), found)
        head.num_labels = len(found)
        head.labels = found
        names[head.name] = found
    task.label_maps = {h: dict(enumerate(v)) for h, v in names.items()}
    return names


def held_out_only_labels(task: TaskConfig, held_out: Sequence[Dict[str, Any]]) -> Dict[str, List[str]]:
    """Labels of eval/test rows that the head's (inferred) inventory lacks, per head, reported by
    name with counts and first rows. They are scored as errors (see the module docstring)."""
    extra: Dict[str, List[str]] = {}
    for head in task.heads:
        known = set(head.labels or [])
        seen = label_counts(task, head.name, list(held_out))
        if task.type == "single_label_classification" and all(_is_int_label(v) for v in seen):
            unseen = [v for v in seen if v not in known and not 0 <= int(v) < len(known)]
        else:
            unseen = [v for v in seen if v not in known]
        if task.type == "ner":  # an I- tag of a known type is known; an unknown type brings B- and I-
            unseen = ner_label_list(unseen)[1:]
            unseen = [t for t in unseen if t not in known]
        if unseen:
            counted = {n: seen.get(n, [0, "-"]) for n in unseen}
            shown = [n for n in unseen if counted[n][0]]
            log.warning("task %r head %r: eval/test rows hold labels the training rows never have: %s. The head "
                        "cannot predict them, so each such row counts as an error in the metrics (and is left out "
                        "of the eval loss); add training rows with them, or fix the rows",
                        task.name, head.name, _describe(counted, shown))
            extra[head.name] = unseen
    return extra


def _encode_label(task: TaskConfig, head_name: str, value: Any, names: List[str], where: str) -> Any:
    index = {n: i for i, n in enumerate(names)}
    if task.type == "single_label_classification":
        if str(value) in index:
            return index[str(value)]
        if _is_int_label(value) and 0 <= int(value) < len(names):
            return int(value)  # an id into explicitly named labels
        raise ValueError(f"{where}: label {value!r} of head {head_name!r} is not one of {names}")
    if task.type == "multi_label_classification":
        if not value:
            return [0.0] * len(names)  # a row with no labels
        if isinstance(value[0], str):
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
    if task.type == "regression":
        vals = value if isinstance(value, list) else [value]
        if len(vals) != len(names):
            raise ValueError(f"{where}: head {head_name!r} expects {len(names)} values, got {value!r}")
        try:
            return [float(v) for v in vals]
        except (TypeError, ValueError):
            raise ValueError(f"{where}: regression target {value!r} is not a number") from None
    unknown = [t for t in value if t not in index]
    if unknown:
        raise ValueError(f"{where}: tags {sorted(set(unknown))} are not in the label set {names}")
    return [index[t] for t in value]


def align_labels_to_tokens(word_ids: Sequence[Optional[int]], word_labels: Sequence[int]) -> List[int]:
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


# ----------------------------------------------------------------------------- datasets


class TextDataset(Dataset):
    """Encoded rows: ``{"input_ids": [...], "attention_mask": [...], "labels": {head: value}}``.

    ``extra_labels``: ``{head: [names]}`` of eval/test labels the head has no class for, encoded
    with ids after its classes (see :func:`held_out_only_labels`).
    """

    def __init__(self, items: List[Dict[str, Any]], task_type: str,
                 extra_labels: Optional[Dict[str, List[str]]] = None):
        self.items = items
        self.task_type = task_type
        self.extra_labels = dict(extra_labels or {})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        return self.items[idx]


def encode_examples(examples: List[Dict[str, Any]], task: TaskConfig, tokenizer: Any, max_length: int,
                    truncation: bool = True, extra_labels: Optional[Dict[str, List[str]]] = None) -> TextDataset:
    """Tokenise examples and encode their labels (NER labels aligned to first sub-tokens).

    ``extra_labels`` (``{head: [names]}``, eval/test only) get ids after the head's classes.
    """
    extra_labels = dict(extra_labels or {})
    names = {h.name: list(h.labels or []) + extra_labels.get(h.name, []) for h in task.heads}
    items: List[Dict[str, Any]] = []
    if not examples:
        return TextDataset(items, task.type, extra_labels)
    if task.type == "ner":
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError("NER needs a fast tokenizer (word_ids() maps sub-tokens to words)")
        enc = tokenizer([ex["words"] for ex in examples], is_split_into_words=True,
                        truncation=truncation, max_length=max_length)
    else:
        enc = tokenizer([ex["text"] for ex in examples], truncation=truncation, max_length=max_length)
    for i, ex in enumerate(examples):
        labels = {}
        for head, value in ex["labels"].items():
            encoded = _encode_label(task, head, value, names[head], ex["where"])
            labels[head] = align_labels_to_tokens(enc.word_ids(i), encoded) if task.type == "ner" else encoded
        items.append({"input_ids": list(enc["input_ids"][i]), "attention_mask": list(enc["attention_mask"][i]),
                      "labels": labels})
    return TextDataset(items, task.type, extra_labels)


class TaskCollator:
    """Pads a list of encoded rows into ``{"input_ids", "attention_mask", "labels": {head: tensor}}``.

    Args:
        task_type: decides the label dtype and whether labels are padded per token.
        pad_token_id: id used to pad ``input_ids``.
        pad_to_length: pad every batch to this length (``padding: max_length``); None pads to
            the longest row.
    """

    def __init__(self, task_type: str, pad_token_id: int, pad_to_length: Optional[int] = None):
        self.task_type = task_type
        self.pad_token_id = int(pad_token_id)
        self.pad_to_length = pad_to_length

    def __call__(self, rows: List[Dict[str, Any]]) -> Dict[str, Any]:
        width = max(len(r["input_ids"]) for r in rows)
        if self.pad_to_length:
            width = max(width, self.pad_to_length)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)  # [B, T]
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.as_tensor(r["input_ids"])
            mask[i, :n] = torch.as_tensor(r["attention_mask"])
        labels = {}
        for head in rows[0]["labels"]:
            values = [r["labels"][head] for r in rows]
            if self.task_type == "ner":
                lab = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
                for i, v in enumerate(values):
                    lab[i, : len(v)] = torch.as_tensor(v)
                labels[head] = lab
            elif self.task_type == "single_label_classification":
                labels[head] = torch.as_tensor(values, dtype=torch.long)
            else:
                labels[head] = torch.as_tensor(values, dtype=torch.float32)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def ner_collate_fn(batch: List[Dict[str, Any]], tokenizer: Any) -> Dict[str, Any]:
    """Upstream-named collate for NER rows (pads labels with -100)."""
    return TaskCollator("ner", tokenizer.pad_token_id)(batch)


def classification_collate_fn(batch: List[Dict[str, Any]], tokenizer: Any) -> Dict[str, Any]:
    """Upstream-named collate for single-label classification rows."""
    return TaskCollator("single_label_classification", tokenizer.pad_token_id)(batch)


# ----------------------------------------------------------------------------- processor


class DataProcessor:
    """Reads every task's files, discovers labels and tokenises.

    Args:
        config: the experiment config; its tasks' ``num_labels``/``labels``/``label_maps``
            are updated from the data.
        tokenizer: a Hugging Face tokenizer (fast, for NER).

    Example:
        >>> train, eval_, config = DataProcessor(config, tokenizer).process()
    """

    def __init__(self, config: ExperimentConfig, tokenizer: Any):
        self.config = config
        self.tokenizer = tokenizer
        self.test_datasets: Dict[str, TextDataset] = {}

    def _read(self, task: TaskConfig, path: str) -> List[Dict[str, Any]]:
        rows = read_rows(path, task.format)
        if task.max_examples is not None and len(rows) > task.max_examples:
            # A seeded sample, not the first rows: files are often sorted by label.
            keep = sorted(random.Random(self.config.training.seed).sample(range(len(rows)), task.max_examples))
            rows = [rows[i] for i in keep]
        examples = rows_to_examples(rows, task, str(path))
        if not examples:
            raise ValueError(f"task {task.name!r}: no examples in {path}")
        return examples

    def _split(self, task: TaskConfig, examples: List[Dict[str, Any]]):
        if task.eval_split <= 0 or len(examples) < 2:
            return examples, []
        order = list(range(len(examples)))
        random.Random(self.config.training.seed).shuffle(order)
        n_eval = max(1, int(round(task.eval_split * len(examples))))
        held = set(order[:n_eval])
        return ([e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held])

    def process(self) -> Tuple[Dict[str, TextDataset], Dict[str, TextDataset], ExperimentConfig]:
        """Build train and eval datasets per task (and ``self.test_datasets``)."""
        train_sets, eval_sets = {}, {}
        max_length, trunc = self.config.tokenizer.max_length, self.config.tokenizer.truncation
        for task in self.config.tasks:
            train = self._read(task, task.data_path)
            if task.eval_data_path:
                evals = self._read(task, task.eval_data_path)
            else:
                train, evals = self._split(task, train)
            tests = self._read(task, task.test_data_path) if task.test_data_path else []
            build_label_maps(task, train, held_out=evals + tests)
            extra = held_out_only_labels(task, evals + tests)  # one id assignment for eval and test
            train_sets[task.name] = encode_examples(train, task, self.tokenizer, max_length, trunc)
            eval_sets[task.name] = encode_examples(evals, task, self.tokenizer, max_length, trunc, extra)
            if tests:
                self.test_datasets[task.name] = encode_examples(tests, task, self.tokenizer, max_length, trunc, extra)
            log.info("task %s: %d train, %d eval, %d test rows; labels %s", task.name, len(train), len(evals),
                     len(tests), {h.name: h.num_labels for h in task.heads})
        return train_sets, eval_sets, self.config
