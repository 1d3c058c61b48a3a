"""Nearest-neighbour retrieval behind one interface: ``add``, ``search(queries, k)``, ``save``, ``load``.

``TorchIndex`` (exact, no extra dependency) is imported eagerly; ``FaissIndex`` and
``AnnoyIndex`` (extra: ``faiss``) and ``MilvusIndex`` (extra: ``milvus``; embedded milvus-lite or a
server) load their backends only when accessed. ``Annoy``, ``Faiss`` and ``Milvus`` are
Torch-RecHub's engine API (``fit`` / ``query``) over those indexes, see
:mod:`trainhub.retrieval.compat`. Saved indexes verify their files on load
(:mod:`trainhub.retrieval.integrity`).
"""

from trainhub.retrieval.base import METRICS, VectorIndex
from trainhub.retrieval.exact import TorchIndex
from trainhub.retrieval.integrity import IndexIntegrityError

__all__ = ["VectorIndex", "TorchIndex", "FaissIndex", "AnnoyIndex", "MilvusIndex", "METRICS", "Annoy", "Faiss",
           "Milvus", "IndexIntegrityError"]

_LAZY = {"FaissIndex": "trainhub.retrieval.faiss_index", "AnnoyIndex": "trainhub.retrieval.annoy_index",
         "MilvusIndex": "trainhub.retrieval.milvus_index", "Milvus": "trainhub.retrieval.milvus_index",
         "Annoy": "trainhub.retrieval.compat", "Faiss": "trainhub.retrieval.compat"}


def __getattr__(name: str):
    # Keeps ``import trainhub.retrieval`` free of optional imports until a backend is asked for.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trainhub.retrieval' has no attribute {name!r}")
