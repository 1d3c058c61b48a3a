"""Token-level pieces of generative retrieval: a tokenizer for semantic-ID tokens and a prefix
trie of valid item token sequences (for constrained beam search).

Torch-RecHub 0.9.0 path: ``torch_rechub.utils.data.Trie``. Upstream tokenised semantic IDs with
a pretrained ``t5-small`` tokenizer (a download) extended by the ID tokens;
:class:`SemanticIDTokenizer` needs no download and follows T5's conventions (PAD 0 = decoder
start, EOS 1 appended to every sequence, UNK 2), so a ``transformers`` ``T5Config`` built with
its ids and its ``len()`` as ``vocab_size`` fits it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

__all__ = ["SemanticIDTokenizer", "Trie", "TOKEN_PATTERN"]

#: one semantic-ID token, e.g. ``<a_12>``
TOKEN_PATTERN = re.compile(r"<[^<>\s]+>")
_VOCAB_FILE = "semantic_id_vocab.json"


class SemanticIDTokenizer:
    """Maps semantic-ID strings such as ``"<a_1><b_7><c_0>"`` to token ids and back.

    Ids: ``pad_token_id = 0`` (also T5's decoder start), ``eos_token_id = 1``, ``unk_token_id = 2``,
    then ``tokens`` in the order given (3, 4, ...). Called like a ``transformers`` tokenizer by
    :meth:`trainhub.data.TigerSeqDataset.get_collate_fn`. A token outside the vocabulary is an
    error naming it (a semantic-ID table that does not match the model's tokenizer), not UNK.

    Args:
        tokens: the semantic-ID tokens, e.g. ``dataset.get_new_tokens()``.
        model_max_length: longest encoded sequence (with EOS) when ``truncation=True``.
        truncation_side: ``"left"`` (default) drops the oldest history tokens, keeping the most
            recent items; ``"right"`` is the ``transformers`` default.

    Example:
        >>> tok = SemanticIDTokenizer(train_data.get_new_tokens())
        >>> tok.encode("<a_0><b_1>")          # [3, 6, 1]
        >>> tok.decode([3, 6, 1], skip_special_tokens=True)  # "<a_0><b_1>"
    """

    pad_token, eos_token, unk_token = "<pad>", "</s>", "<unk>"
    pad_token_id, eos_token_id, unk_token_id = 0, 1, 2

    def __init__(self, tokens: Iterable[str], model_max_length: int = 512, truncation_side: str = "left"):
        if truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got {truncation_side!r}")
        specials = [self.pad_token, self.eos_token, self.unk_token]
        vocab = list(dict.fromkeys(tokens))  # unique, in order
        bad = [t for t in vocab if not TOKEN_PATTERN.fullmatch(t) or t in specials]
        if bad:
            raise ValueError(f"semantic-ID tokens look like '<a_12>'; these are not: {bad[:10]}")
        self.id_to_token = specials + vocab
        self.token_to_id = {t: i for i, t in enumerate(self.id_to_token)}
        self.model_max_length = model_max_length
        self.truncation_side = truncation_side

    @property
    def decoder_start_token_id(self) -> int:
        return self.pad_token_id

    @property
    def all_special_ids(self) -> list[int]:
        return [self.pad_token_id, self.eos_token_id, self.unk_token_id]

    def __len__(self) -> int:
        return len(self.id_to_token)

    def tokenize(self, text: str) -> list[str]:
        """``"<a_1><b_2>"`` -> ``["<a_1>", "<b_2>"]``; whitespace between tokens is allowed."""
        tokens = TOKEN_PATTERN.findall(text)
        rest = TOKEN_PATTERN.sub("", text)
        if rest.strip():
            raise ValueError(f"{text[:80]!r} is not a string of semantic-ID tokens like '<a_1><b_2>' "
                             f"(left over: {rest.strip()[:40]!r})")
        return tokens

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self._id(tokens)
        return [self._id(t) for t in tokens]

    def _id(self, token: str) -> int:
        try:
            return self.token_to_id[token]
        except KeyError:
            raise KeyError(f"semantic-ID token {token!r} is not in this tokenizer's vocabulary of "
                           f"{len(self) - 3} tokens: the semantic-ID table and the tokenizer (or the model "
                           "trained with it) come from different RQ-VAE runs or codebook sizes") from None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``, ending with EOS when ``add_special_tokens``."""
        ids = [self._id(t) for t in self.tokenize(text)]
        return ids + [self.eos_token_id] if add_special_tokens else ids

    def __call__(self, text: str | Sequence[str], return_tensors: str | None = None, padding: Any = False,
                 max_length: int | None = None, truncation: bool = False, return_attention_mask: bool = True,
                 add_special_tokens: bool = True) -> dict[str, Any]:
        """``{"input_ids", "attention_mask"}`` of one text or a batch; ``padding`` (True or
        ``"longest"``) pads to the longest row; ``return_tensors="pt"`` gives ``[B, T]`` tensors."""
        single = isinstance(text, str)
        rows = [self.encode(t, add_special_tokens) for t in ([text] if single else text)]
        if truncation:
            limit = max_length or self.model_max_length
            rows = [self._truncate(r, limit) for r in rows]
        masks = [[1] * len(r) for r in rows]
        if padding or return_tensors == "pt":
            if return_tensors == "pt" and not padding and len({len(r) for r in rows}) > 1:
                raise ValueError("rows differ in length: pass padding=True to return tensors")
            width = max((len(r) for r in rows), default=0)
            masks = [m + [0] * (width - len(m)) for m in masks]
            rows = [r + [self.pad_token_id] * (width - len(r)) for r in rows]
        out: dict[str, Any] = {"input_ids": rows}
        if return_attention_mask:
            out["attention_mask"] = masks
        if return_tensors == "pt":
            out = {k: torch.tensor(v, dtype=torch.long).reshape(len(rows), -1) for k, v in out.items()}
        elif single:
            out = {k: v[0] for k, v in out.items()}
        return out

    def _truncate(self, ids: list[int], limit: int) -> list[int]:
        if len(ids) <= limit:
            return ids
        has_eos = bool(ids) and ids[-1] == self.eos_token_id
        body, tail = (ids[:-1], ids[-1:]) if has_eos else (ids, [])
        keep = max(limit - len(tail), 0)
        return (body[len(body) - keep:] if self.truncation_side == "left" else body[:keep]) + tail

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return "".join(self.id_to_token[i] for i in ids if i >= 0 and i not in skip)

    def batch_decode(self, rows: Iterable[Iterable[int]] | torch.Tensor,
                     skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(r, skip_special_tokens) for r in rows]

    # -- files -----------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the vocabulary to ``<directory>/semantic_id_vocab.json``."""
        path = Path(directory) / _VOCAB_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"tokens": self.id_to_token[3:], "model_max_length": self.model_max_length,
                   "truncation_side": self.truncation_side}
        path.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        return path

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "SemanticIDTokenizer":
        """Read a vocabulary written by :meth:`save_pretrained` (a folder or the file itself)."""
        path = Path(directory)
        path = path / _VOCAB_FILE if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no semantic-ID vocabulary at {path} (SemanticIDTokenizer.save_pretrained "
                                    "writes it)")
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            return cls(payload["tokens"], payload.get("model_max_length", 512), payload.get("truncation_side", "left"))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a semantic-ID vocabulary ({err})") from err


class Trie:
    """Prefix tree of token-id sequences; ``get(prefix)`` lists the tokens that may follow.

    Built from every item's ``[decoder_start] + ids + [eos]``, it constrains beam search so only
    existing items are generated (:meth:`def_prefix_allowed_tokens_fn`). ``append(trie, bos)``
    chains a second trie after ``bos`` (upstream's API, kept).

    Example:
        >>> trie = Trie([[0, 10, 20], [0, 10, 21], [0, 11, 30]])
        >>> sorted(trie.get([0, 10]))    # [20, 21]
    """

    def __init__(self, sequences: Iterable[Sequence[int]] = ()):
        self.trie_dict: dict[int, dict] = {}
        self.len = 0
        for sequence in sequences:
            self.add(sequence)
        self.append_trie: Trie | None = None
        self.bos_token_id: int | None = None

    def add(self, sequence: Sequence[int]) -> None:
        node = self.trie_dict
        for token in sequence:
            node = node.setdefault(int(token), {})
        self.len += 1

    def append(self, trie: "Trie", bos_token_id: int) -> None:
        self.append_trie, self.bos_token_id = trie, bos_token_id

    def get(self, prefix_sequence: Sequence[int]) -> list[int]:
        """Tokens allowed after ``prefix_sequence`` (empty when it is not a prefix of any sequence)."""
        node = self.trie_dict
        for i, token in enumerate(prefix_sequence):
            child = node.get(int(token))
            if child is None:
                return self.append_trie.get(prefix_sequence[i:]) if self.append_trie is not None else []
            node = child
        allowed = list(node)
        if self.append_trie is not None and self.bos_token_id in allowed:
            allowed.remove(self.bos_token_id)
            allowed += list(self.append_trie.trie_dict)
        return allowed

    def def_prefix_allowed_tokens_fn(self, candidate_trie: "Trie | None" = None):
        """``fn(batch_id, sentence) -> allowed tokens`` for ``generate(prefix_allowed_tokens_fn=...)``."""
        trie = candidate_trie if candidate_trie is not None else self

        def prefix_allowed_tokens(batch_id: int, sentence: torch.Tensor) -> list[int]:
            return trie.get(sentence.tolist())

        return prefix_allowed_tokens

    @staticmethod
    def load_from_dict(trie_dict: dict) -> "Trie":
        trie = Trie()
        trie.trie_dict = trie_dict
        trie.len = sum(1 for _ in trie)
        return trie

    def __iter__(self) -> Iterator[list[int]]:
        stack: list[tuple[list[int], dict]] = [([], self.trie_dict)]
        while stack:
            prefix, node = stack.pop()
            if not node:
                yield prefix
                continue
            for token in reversed(list(node)):
                stack.append((prefix + [token], node[token]))

    def __len__(self) -> int:
        return self.len

    def __getitem__(self, value: Sequence[int]) -> list[int]:
        return self.get(value)
