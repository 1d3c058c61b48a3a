"""Data for semantic-ID generative retrieval: item embeddings for RQ-VAE (:class:`EmbDataset`) and
user histories as semantic-ID text for TIGER (:class:`TigerSeqDataset`).

Torch-RecHub 0.9.0 paths: ``torch_rechub.utils.data.EmbDataset``, ``.TigerSeqDataset`` and
``.Trie`` (the trie and the tokenizer live in :mod:`trainhub.data.semantic_tokens`).

Input formats, as upstream:

* ``inters``: ``{user_id: [item_id, ...]}``, each history in time order (``inter.json``);
* ``indices``: ``{item_id: ["<a_3>", "<b_17>", "<c_5>"]}``, one semantic ID per item
  (``semantic_ids.json``, what :meth:`RQVAEModel.generate_semantic_ids` returns).

Either may be a dict or the path of a JSON file; integer keys are accepted (JSON turns them
into strings). Files are read as plain data: nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import pickle  # only for its error type: nothing here unpickles
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from trainhub.data.semantic_tokens import SemanticIDTokenizer, Trie

__all__ = ["EmbDataset", "TigerSeqDataset", "Trie", "SemanticIDTokenizer", "read_json", "load_embeddings",
           "TIGER_MODES"]

log = logging.getLogger(__name__)

TIGER_MODES = ("train", "valid", "test")
_EMB_SUFFIXES = (".npy", ".pt", ".pth", ".safetensors")


# -- item embeddings ------------------------------------------------------------------------------
def load_embeddings(source: Any) -> np.ndarray:
    """An ``[N, D]`` float32 matrix from an array, a tensor or a file, running no pickled code.

    Files: ``.npy`` (``allow_pickle=False``), ``.pt`` / ``.pth`` (``torch.load(weights_only=True)``;
    a tensor, or a dict holding one tensor) and ``.safetensors`` (one tensor).
    """
    name = f"item embeddings in {source}" if isinstance(source, (str, os.PathLike)) else "item embeddings"
    if isinstance(source, (str, os.PathLike)):
        source = _read_embedding_file(Path(source))
    array = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else np.asarray(source)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [num_items, dim] matrix, got shape {array.shape}")
    array = array.astype(np.float32, copy=False)
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if len(bad):
        raise ValueError(f"{name} have non-finite values in {len(bad)} rows (first: {bad[:10].tolist()})")
    return array


def _read_embedding_file(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"embedding file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in _EMB_SUFFIXES:
        raise ValueError(f"unsupported embedding format {suffix!r} for {path}: use one of {_EMB_SUFFIXES}")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded = load_file(str(path))
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (ValueError, RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:  # pickles, truncated files
        raise ValueError(f"cannot read item embeddings from {path}: {err}") from err
    if isinstance(loaded, Mapping):
        tensors = [v for v in loaded.values() if isinstance(v, torch.Tensor)]
        if len(tensors) != 1:
            raise ValueError(f"{path} holds {len(tensors)} tensors; the embedding file must hold exactly one")
        loaded = tensors[0]
    if not isinstance(loaded, torch.Tensor):
        raise TypeError(f"{path} does not contain a tensor (found {type(loaded).__name__})")
    return loaded


class EmbDataset(Dataset):
    """Item embeddings ``[N, D]``, one ``float32 [D]`` tensor per item (RQ-VAE's input).

    Args:
        data_path: a ``.npy`` / ``.pt`` / ``.pth`` / ``.safetensors`` file, or an array or tensor.
        device: kept for upstream's signature; rows are CPU tensors (the loop moves batches).

    Attributes:
        embeddings: the ``float32 [N, D]`` array.
        dim: ``D``.

    Example:
        >>> data = EmbDataset("item_embeddings.npy")
        >>> loader = DataLoader(data, batch_size=512, shuffle=True)
    """

    def __init__(self, data_path: Any, device: str = "cpu"):
        self.data_path = data_path if isinstance(data_path, (str, os.PathLike)) else None
        self.embeddings = load_embeddings(data_path)
        self.dim = self.embeddings.shape[1]

    def __getitem__(self, index: Any) -> torch.Tensor:
        # a list or array of indices gives [len, D] (upstream's generate_semantic_ids relies on it)
        return torch.from_numpy(np.ascontiguousarray(self.embeddings[index]))

    def __len__(self) -> int:
        return len(self.embeddings)


# -- JSON inputs -----------------------------------------------------------------------------------
def read_json(source: Any, what: str) -> tuple[Any, str]:
    """``(data, origin)``: ``source`` itself when it is already data, else the parsed JSON file.

    ``what`` names the input in errors (``"inters"``); ``origin`` is the file path or ``what``.
    """
    if not isinstance(source, (str, os.PathLike)):
        return source, what
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} file {path} is not valid JSON: {err.msg} at line {err.lineno}, "
                         f"column {err.colno}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} file {path} is not UTF-8 text: {err}") from err


def _check_inters(inters: Any, origin: str) -> dict[str, list]:
    if not isinstance(inters, Mapping):
        raise TypeError(f"{origin} must map user ids to item-id lists, got {type(inters).__name__}")
    out = {}
    for user, items in inters.items():
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise TypeError(f"{origin}: user {user!r} has {type(items).__name__}, not a list of item ids")
        out[str(user)] = list(items)
    return out


def _check_indices(indices: Any, origin: str) -> dict[str, list[str]]:
    if not isinstance(indices, Mapping):
        raise TypeError(f"{origin} must map item ids to semantic-ID token lists, got {type(indices).__name__}")
    out: dict[str, list[str]] = {}
    for item, tokens in indices.items():
        if isinstance(tokens, str) or not isinstance(tokens, Sequence) or not all(isinstance(t, str) for t in tokens):
            raise TypeError(f"{origin}: item {item!r} maps to {tokens!r}, not a list of tokens like ['<a_1>', '<b_2>']")
        if str(item) in out:
            raise ValueError(f"{origin}: item id {item!r} appears twice (as {str(item)!r})")
        out[str(item)] = list(tokens)
    return out


# -- TIGER sequences -------------------------------------------------------------------------------
class TigerSeqDataset(Dataset):
    """Users' histories as semantic-ID text, each sample ``{"input_ids": history, "labels": next}``.

    Splits (leave-one-out, as upstream): ``"train"`` expands every prefix of ``items[:-2]`` (history
    ``items[:i]`` -> target ``items[i]``, ``i >= 1``); ``"valid"`` predicts ``items[-2]`` from
    ``items[:-2]``; ``"test"`` predicts ``items[-1]`` from ``items[:-1]``. Histories keep their last
    ``max_his_len`` items (``<= 0``: all). Users too short for a split are skipped (logged).

    Args:
        inters: ``{user: [item, ...]}`` or the path of its JSON file.
        indices: ``{item: [token, ...]}`` or the path of its JSON file; must cover every item in
            ``inters`` (an error names the first missing item and its user).
        max_his_len: most recent items kept in a history.
        mode: ``"train"``, ``"valid"`` or ``"test"``.
        sample_num: test mode only: evaluate a random subset of this many users (numpy's global
            generator, as upstream); 0 = all.

    Example:
        >>> train = TigerSeqDataset("inter.json", "semantic_ids.json", max_his_len=20, mode="train")
        >>> tokenizer = SemanticIDTokenizer(train.get_new_tokens())
        >>> loader = DataLoader(train, batch_size=256, shuffle=True, collate_fn=train.get_collate_fn(tokenizer))
    """

    def __init__(self, inters: Any, indices: Any, max_his_len: int, mode: str = "train", sample_num: int = 0):
        super().__init__()
        if mode not in TIGER_MODES:
            raise ValueError(f"mode must be one of {TIGER_MODES}, got {mode!r}")
        self.max_his_len, self.mode, self.sample_num = max_his_len, mode, sample_num
        inters, self.inters_origin = read_json(inters, "inters")
        indices, self.indices_origin = read_json(indices, "indices")
        self.inters = _check_inters(inters, self.inters_origin)
        self.indices = _check_indices(indices, self.indices_origin)
        self.new_tokens: list[str] | None = None
        self.allowed_tokens: dict[int, set[int]] | None = None
        self.remapped_inters = self._remap_items()
        self.inter_data = self._process_data()

    def _remap_items(self) -> dict[str, list[str]]:
        """Each user's items as their joined semantic-ID strings."""
        joined = {item: "".join(tokens) for item, tokens in self.indices.items()}
        remapped = {}
        for user, items in self.inters.items():
            missing = [i for i in items if str(i) not in joined]
            if missing:
                raise KeyError(f"item {missing[0]!r} of user {user!r} (in {self.inters_origin}) has no semantic ID "
                               f"in {self.indices_origin}: the semantic-ID table must cover every item")
            remapped[user] = [joined[str(i)] for i in items]
        return remapped

    def _truncate(self, history: list[str]) -> list[str]:
        return history[-self.max_his_len:] if self.max_his_len > 0 else history

    def _sample(self, history: list[str], target: str) -> dict[str, str]:
        return {"item": target, "inters": "".join(self._truncate(history))}

    def _process_data(self) -> list[dict[str, str]]:
        samples, skipped = [], 0
        for items in self.remapped_inters.values():
            if self.mode == "train":
                body = items[:-2]
                samples += [self._sample(body[:i], body[i]) for i in range(1, len(body))]
            elif self.mode == "valid":
                if len(items) < 2:
                    skipped += 1
                    continue
                samples.append(self._sample(items[:-2], items[-2]))
            else:
                if not items:
                    skipped += 1
                    continue
                samples.append(self._sample(items[:-1], items[-1]))
        if skipped:
            log.info("%s split: %d users skipped, too few items for a target", self.mode, skipped)
        if self.mode == "test" and self.sample_num > 0:
            if self.sample_num > len(samples):
                raise ValueError(f"sample_num={self.sample_num} is more than the {len(samples)} test users")
            chosen = np.random.choice(len(samples), self.sample_num, replace=False)
            samples = [samples[i] for i in chosen]
        return samples

    # -- tokens ------------------------------------------------------------------------------------
    def get_new_tokens(self) -> list[str]:
        """Every semantic-ID token in ``indices``, sorted (the tokens a tokenizer must add)."""
        if self.new_tokens is None:
            self.new_tokens = sorted({t for tokens in self.indices.values() for t in tokens})
        return self.new_tokens

    def get_all_items(self, as_list: bool = False) -> set[str] | list[str]:
        """Every item's joined semantic ID (a set; ``as_list`` keeps ``indices``' order)."""
        items = ["".join(tokens) for tokens in self.indices.values()]
        return items if as_list else set(items)

    def get_prefix_allowed_tokens_fn(self, tokenizer: Any) -> Callable[[int, torch.Tensor], list[int]]:
        """``fn(batch_id, generated)`` for ``generate(prefix_allowed_tokens_fn=...)``: at step ``i``
        after the decoder start (id 0), any token seen at level ``i`` of some item, then EOS.

        Looser than the trie (a level's token need not follow the previous one's); use
        :meth:`item_trie` to generate existing items only.
        """
        if self.allowed_tokens is None:
            allowed: dict[int, set[int]] = {}
            for tokens in self.indices.values():
                for level, token in enumerate(tokens):
                    allowed.setdefault(level, set()).add(tokenizer(token)["input_ids"][0])
            allowed[len(allowed)] = {tokenizer.eos_token_id}
            self.allowed_tokens = allowed
        table, start = self.allowed_tokens, getattr(tokenizer, "decoder_start_token_id", 0) or 0

        def prefix_allowed_tokens_fn(batch_id: int, sentence: torch.Tensor) -> list[int]:
            ids = sentence.tolist()
            since_start = ids[::-1].index(start) if start in ids else len(ids)
            return sorted(table.get(since_start, {tokenizer.eos_token_id}))

        return prefix_allowed_tokens_fn

    def item_trie(self, tokenizer: Any) -> Trie:
        """Trie of ``[decoder_start] + tokenizer.encode(item)`` over every item (constrained search)."""
        start = getattr(tokenizer, "decoder_start_token_id", 0) or 0
        return Trie([start] + list(tokenizer.encode(item)) for item in self.get_all_items(as_list=True))

    # -- torch Dataset -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.inter_data)

    def __getitem__(self, index: int) -> dict[str, str]:
        sample = self.inter_data[index % len(self.inter_data)]
        return {"input_ids": sample["inters"], "labels": sample["item"]}

    def get_collate_fn(self, tokenizer: Any) -> Callable[[list[dict[str, str]]], dict[str, torch.Tensor]]:
        """Batch samples into ``{"input_ids", "attention_mask", "labels"}`` tensors ``[B, T]``, padded
        to the longest row, with PAD label positions set to -100 (ignored by the loss)."""
        if getattr(tokenizer, "pad_token_id", None) is None:
            tokenizer.pad_token_id = 0

        def collate_fn(batch: list[dict[str, str]]) -> dict[str, torch.Tensor]:
            kwargs = dict(return_tensors="pt", padding="longest", max_length=tokenizer.model_max_length,
                          truncation=True, return_attention_mask=True)
            inputs = tokenizer([s["input_ids"] for s in batch], **kwargs)
            labels = tokenizer([s["labels"] for s in batch], **kwargs)["input_ids"].clone()
            labels[labels == tokenizer.pad_token_id] = -100
            # a plain dict (not a transformers BatchEncoding), so the loop moves it to the device
            return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "labels": labels}

        return collate_fn
