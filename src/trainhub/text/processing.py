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

import logging
import random
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

# The label-map files belong with the config they describe; they stay importable from here.
from trainhub.text.config import ExperimentConfig, TaskConfig, load_label_maps, save_label_maps

# Kinds own what differs between task types; these helpers of theirs stay importable from here.
from trainhub.text.kinds import align_labels_to_tokens, kind_for, ner_label_list, to_iob2
from trainhub.text.metrics import IGNORE_INDEX
from trainhub.text.readers import read_rows

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


# ----------------------------------------------------------------------------- examples


def rows_to_examples(rows: list[dict[str, Any]], task: TaskConfig, source: str) -> list[dict[str, Any]]:
    """Turn reader rows into ``{"text"|"words", "labels": {head: raw label}, "where"}`` examples."""
    kind = kind_for(task.type)
    examples = []
    for row in rows:
        where = f"{source}, row {row.get('_row', '?')}"
        ex = kind.example(row, task, where)
        if ex is None:
            continue
        ex["where"] = where
        examples.append(ex)
    return examples


# ----------------------------------------------------------------------------- labels


def _declared(task: TaskConfig, head: Any) -> list[str] | None:
    if head.labels:
        return list(head.labels)
    if task.label_maps and head.name in task.label_maps:
        return [task.label_maps[head.name][i] for i in sorted(task.label_maps[head.name])]
    return kind_for(task.type).declared_labels(task)


def label_counts(task: TaskConfig, head: str, examples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """``{label: [count, first row's "file, row N"]}`` over ``examples``, in order of appearance."""
    kind = kind_for(task.type)
    seen: dict[str, list[Any]] = {}
    for ex in examples:
        for name in kind.raw_labels(ex["labels"][head]):
            entry = seen.setdefault(name, [0, ex.get("where", "?")])
            entry[0] += 1
    return seen


def _describe(seen: dict[str, list[Any]], names: Sequence[str]) -> str:
    return ", ".join(f"{n!r} ({seen[n][0]}x, first at {seen[n][1]})" for n in names)


def _check_declared(task: TaskConfig, head: Any, names: list[str], examples: list[dict[str, Any]],
                    how: str) -> None:
    """Every label of every split must be in the declared inventory (integer labels may be ids)."""
    kind = kind_for(task.type)
    known = set(names)
    for ex in examples:
        for label in kind.raw_labels(ex["labels"][head.name]):
            if label in known or kind.is_id_of(label, names):
                continue  # a name, or an id into explicitly named labels
            raise ValueError(f"{ex.get('where', '?')}: label {label!r} of task {task.name!r} head {head.name!r} is "
                             f"not in the inventory {how} {names}; fix the row, or add the label to the config")


def build_label_maps(task: TaskConfig, examples: list[dict[str, Any]],
                     held_out: Sequence[dict[str, Any]] = ()) -> dict[str, list[str]]:
    """Label names (in id order) per head: the declared inventory, or one inferred from ``examples``
    (the training rows). ``held_out`` (eval/test rows) is checked against a declared inventory.

    Also writes them back into ``task`` (``heads[i].num_labels``, ``heads[i].labels``,
    ``task.label_maps``) so the saved config reproduces the model.

    Raises:
        ValueError: a label outside a declared inventory (naming file, row and label), or a
            ``num_labels`` the training labels do not match (listing them all).
    """
    kind = kind_for(task.type)
    names: dict[str, list[str]] = {}
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
        else:
            found = kind.infer_labels(head, values, seen, examples, task)
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


def held_out_only_labels(task: TaskConfig, held_out: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Labels of eval/test rows that the head's (inferred) inventory lacks, per head, reported by
    name with counts and first rows. They are scored as errors (see the module docstring)."""
    kind = kind_for(task.type)
    extra: dict[str, list[str]] = {}
    for head in task.heads:
        known = set(head.labels or [])
        seen = label_counts(task, head.name, list(held_out))
        unseen = kind.unseen_labels(seen, known)
        if unseen:
            counted = {n: seen.get(n, [0, "-"]) for n in unseen}
            shown = [n for n in unseen if counted[n][0]]
            log.warning("task %r head %r: eval/test rows hold labels the training rows never have: %s. The head "
                        "cannot predict them, so each such row counts as an error in the metrics (and is left out "
                        "of the eval loss); add training rows with them, or fix the rows",
                        task.name, head.name, _describe(counted, shown))
            extra[head.name] = unseen
    return extra


# ----------------------------------------------------------------------------- datasets


class TextDataset(Dataset):
    """Encoded rows: ``{"input_ids": [...], "attention_mask": [...], "labels": {head: value}}``.

    ``extra_labels``: ``{head: [names]}`` of eval/test labels the head has no class for, encoded
    with ids after its classes (see :func:`held_out_only_labels`).
    """

    def __init__(self, items: list[dict[str, Any]], task_type: str,
                 extra_labels: dict[str, list[str]] | None = None):
        self.items = items
        self.task_type = task_type
        self.extra_labels = dict(extra_labels or {})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        return self.items[idx]


def encode_examples(examples: list[dict[str, Any]], task: TaskConfig, tokenizer: Any, max_length: int,
                    truncation: bool = True, extra_labels: dict[str, list[str]] | None = None) -> TextDataset:
    """Tokenise examples and encode their labels (NER labels aligned to first sub-tokens).

    ``extra_labels`` (``{head: [names]}``, eval/test only) get ids after the head's classes.
    """
    kind = kind_for(task.type)
    extra_labels = dict(extra_labels or {})
    names = {h.name: list(h.labels or []) + extra_labels.get(h.name, []) for h in task.heads}
    items: list[dict[str, Any]] = []
    if not examples:
        return TextDataset(items, task.type, extra_labels)
    enc = kind.tokenize_examples(tokenizer, examples, truncation, max_length)
    for i, ex in enumerate(examples):
        labels = {}
        for head, value in ex["labels"].items():
            encoded = kind.encode_label(head, value, names[head], ex["where"])
            labels[head] = kind.align(enc.word_ids(i), encoded) if kind.token_level else encoded
        items.append({"input_ids": list(enc["input_ids"][i]), "attention_mask": list(enc["attention_mask"][i]),
                      "labels": labels})
    return TextDataset(items, task.type, extra_labels)


class TaskCollator:
    """Pads a list of encoded rows into ``{"input_ids", "attention_mask", "labels": {head: tensor}}``.

    Args:
        task_type: its kind decides the label dtype and whether labels are padded per token.
        pad_token_id: id used to pad ``input_ids``.
        pad_to_length: pad every batch to this length (``padding: max_length``); None pads to
            the longest row.
    """

    def __init__(self, task_type: str, pad_token_id: int, pad_to_length: int | None = None):
        self.task_type = task_type
        kind = kind_for(task_type)
        self.token_level = kind.token_level
        self.label_dtype = getattr(torch, kind.label_dtype)
        self.pad_token_id = int(pad_token_id)
        self.pad_to_length = pad_to_length

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
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
            if self.token_level:
                lab = torch.full((len(rows), width), IGNORE_INDEX, dtype=self.label_dtype)
                for i, v in enumerate(values):
                    lab[i, : len(v)] = torch.as_tensor(v)
                labels[head] = lab
            else:
                labels[head] = torch.as_tensor(values, dtype=self.label_dtype)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def ner_collate_fn(batch: list[dict[str, Any]], tokenizer: Any) -> dict[str, Any]:
    """Upstream-named collate for NER rows (pads labels with -100)."""
    return TaskCollator("ner", tokenizer.pad_token_id)(batch)


def classification_collate_fn(batch: list[dict[str, Any]], tokenizer: Any) -> dict[str, Any]:
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
        self.test_datasets: dict[str, TextDataset] = {}

    def _read(self, task: TaskConfig, path: str) -> list[dict[str, Any]]:
        rows = read_rows(path, task.format)
        if task.max_examples is not None and len(rows) > task.max_examples:
            # A seeded sample, not the first rows: files are often sorted by label.
            keep = sorted(random.Random(self.config.training.seed).sample(range(len(rows)), task.max_examples))
            rows = [rows[i] for i in keep]
        examples = rows_to_examples(rows, task, str(path))
        if not examples:
            raise ValueError(f"task {task.name!r}: no examples in {path}")
        return examples

    def _split(self, task: TaskConfig, examples: list[dict[str, Any]]):
        if task.eval_split <= 0 or len(examples) < 2:
            return examples, []
        order = list(range(len(examples)))
        random.Random(self.config.training.seed).shuffle(order)
        n_eval = max(1, int(round(task.eval_split * len(examples))))
        held = set(order[:n_eval])
        return ([e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held])

    def process(self) -> tuple[dict[str, TextDataset], dict[str, TextDataset], ExperimentConfig]:
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
