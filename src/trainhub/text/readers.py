"""File readers: JSONL, JSON arrays, CSV/TSV and CoNLL into plain row dicts.

Readers only parse files; turning rows into labelled examples (and checking them) is
:mod:`trainhub.text.processing`'s job. Every row carries ``_row`` (1-based line or record number)
so later errors and warnings can name the file and row.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

__all__ = [
    "infer_format",
    "read_jsonl",
    "read_json",
    "read_delimited",
    "read_conll",
    "read_rows",
    "split_words",
    "char_spans_to_iob2",
]

log = logging.getLogger(__name__)

_EXTENSIONS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".conll": "conll",
               ".txt": "conll", ".iob": "conll", ".bio": "conll"}
# Words are runs of letters/digits, or single punctuation marks, so that a span like
# "'Shadow Syndicate'" -> Shadow Syndicate lines up with word boundaries.
_WORD_RE = re.compile(r"\w+|[^\w\s]")


def infer_format(path: str | Path, forced: str | None = None) -> str:
    """Reader name for ``path``: the forced one, else from the extension."""
    if forced:
        return forced
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise ValueError(f"cannot tell the format of {path} from its extension {suffix!r}; "
                         f"set the task's `format` to one of jsonl, json, csv, tsv, conll")
    return _EXTENSIONS[suffix]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """One JSON object per line; blank lines are skipped (upstream samples start with one)."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {lineno}: invalid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}, line {lineno}: expected a JSON object, got {type(obj).__name__}")
            obj["_row"] = lineno
            rows.append(obj)
    return rows


def read_json(path: str | Path) -> list[dict[str, Any]]:
    """A JSON array of objects (``.json``)."""
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON at line {err.lineno} ({err.msg})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array of objects (SQuAD-style files are not supported)")
    rows = []
    for i, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            raise ValueError(f"{path}, record {i}: expected a JSON object, got {type(obj).__name__}")
        rows.append({**obj, "_row": i})
    return rows


def read_delimited(path: str | Path, delimiter: str = ",") -> list[dict[str, Any]]:
    """CSV or TSV with a header row. TSV is read without quote handling (tweets hold stray quotes)."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter, quoting=quoting, skipinitialspace=delimiter == ",")
        if reader.fieldnames is None:
            raise ValueError(f"{path}: empty file (a header row is required)")
        reader.fieldnames = [f.strip() for f in reader.fieldnames]
        for lineno, row in enumerate(reader, start=2):
            if None in row:
                raise ValueError(f"{path}, line {lineno}: more fields than the header {reader.fieldnames}")
            row = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
            row["_row"] = lineno
            rows.append(row)
    return rows


def read_conll(path: str | Path) -> list[dict[str, Any]]:
    """``token TAG`` lines (whitespace-separated, tag last), a blank line between sentences.
    ``-DOCSTART-`` lines are skipped. Returns ``{"words", "tags", "_row"}`` per sentence.

    Every token line must have as many columns as the file's first one (``token TAG``, or e.g.
    CoNLL-2003's ``token POS CHUNK TAG``): a stray extra column would otherwise become the tag.
    """
    rows: list[dict[str, Any]] = []
    words: list[str] = []
    tags: list[str] = []
    start = 1
    width: tuple[int, int] | None = None  # (columns, line that set them)
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                if words:
                    rows.append({"words": words, "tags": tags, "_row": start})
                words, tags = [], []
                start = lineno + 1
                continue
            if len(parts) < 2:
                raise ValueError(f"{path}, line {lineno}: expected 'token TAG', got {line.rstrip()!r}")
            if width is None:
                width = (len(parts), lineno)
            elif len(parts) != width[0]:
                raise ValueError(
                    f"{path}, line {lineno}: {len(parts)} columns ({line.strip()!r}), but line {width[1]} has "
                    f"{width[0]}; every token line needs the same columns with the tag last (a token that "
                    "contains spaces must be split or joined)")
            words.append(parts[0])
            tags.append(parts[-1])
    if words:
        rows.append({"words": words, "tags": tags, "_row": start})
    return rows


def read_rows(path: str | Path, fmt: str | None = None) -> list[dict[str, Any]]:
    """Read any supported file into row dicts."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    fmt = infer_format(path, fmt)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "json":
        return read_json(path)
    if fmt in ("csv", "tsv"):
        return read_delimited(path, "\t" if fmt == "tsv" else ",")
    return read_conll(path)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """``(word, start, end)`` for each word of ``text`` (end exclusive)."""
    return [(m.group(), m.start(), m.end()) for m in _WORD_RE.finditer(text)]


def char_spans_to_iob2(
    text: str, entities: list[dict[str, Any]], where: str = "<text>"
) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    """Convert character-span entities (``start``, ``end`` exclusive, ``label``) to IOB2 word tags.

    A span that does not fall on word boundaries (the upstream sample files have such rows) keeps
    only the words it covers completely, with a warning naming ``where``, the span and the words
    kept; it never grows to words it only touches (``'afaricom i'`` must not become "Safaricom
    ilitangaza"). A span that covers no whole word, lies outside the text or overlaps an earlier
    entity is dropped with a warning. Never raises for bad offsets.

    Returns:
        words, IOB2 tags, and each word's ``(start, end)`` character offsets.
    """
    spans = split_words(text)
    words = [w for w, _, _ in spans]
    offsets = [(s, e) for _, s, e in spans]
    tags = ["O"] * len(words)
    for ent in sorted(entities or [], key=lambda e: (e.get("start", 0), e.get("end", 0))):
        try:
            start, end, label = int(ent["start"]), int(ent["end"]), str(ent["label"])
        except (KeyError, TypeError, ValueError):
            log.warning("%s: entity %r needs integer start/end and a label; skipped", where, ent)
            continue
        if not (0 <= start < end <= len(text)):
            log.warning("%s: entity %s [%d, %d) lies outside the text (length %d); skipped",
                        where, label, start, end, len(text))
            continue
        touched = [i for i, (s, e) in enumerate(offsets) if s < end and e > start]
        hit = [i for i in touched if offsets[i][0] >= start and offsets[i][1] <= end]
        if not hit:
            log.warning("%s: entity %s [%d, %d) %r covers no whole word; skipped (fix its offsets)", where, label,
                        start, end, text[start:end])
            continue
        if any(tags[i] != "O" for i in hit):
            log.warning("%s: entity %s [%d, %d) overlaps an earlier entity; skipped", where, label, start, end)
            continue
        snapped = (offsets[hit[0]][0], offsets[hit[-1]][1])
        cut = [words[i] for i in touched if i not in hit]
        only_spaces = not cut and text[start:end].strip() == text[snapped[0]:snapped[1]]
        if snapped != (start, end) and not only_spaces:
            log.warning("%s: entity %s span [%d, %d) %r does not match word boundaries; kept the words it covers "
                        "completely, [%d, %d) %r%s (fix its offsets)",
                        where, label, start, end, text[start:end], snapped[0], snapped[1],
                        text[snapped[0]:snapped[1]], f", not the words it cuts {cut}" if cut else "")
        for j, i in enumerate(hit):
            tags[i] = ("B-" if j == 0 else "I-") + label
    return words, tags, offsets
