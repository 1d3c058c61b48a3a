"""Nearest-neighbour retrieval behind one interface: ``add``, ``search(queries, k)``, ``save``, ``load``.

``TorchIndex`` (exact, no extra dependency) is imported eagerly; ``FaissIndex`` and
``AnnoyIndex`` (extra: ``faiss``) and ``MilvusIndex`` (extra: ``milvus``; embedded milvus-lite or a
server) load their backends only when accessed. ``Milvus`` is Torch-RecHub's
``utils.match.Milvus`` adapter. Saved indexes verify their files on load
(:mod:`trainhub.retrieval.integrity`).
"""

from trainhub.retrieval.base import METRICS, VectorIndex
from trainhub.retrieval.exact import TorchIndex
from trainhub.retrieval.integrity import IndexIntegrityError

__all__ = ["VectorIndex", "TorchIndex", "FaissIndex", "AnnoyIndex", "MilvusIndex", "Milvus", "METRICS",
           "IndexIntegrityError"]


def __getattr__(name: str):
    # Keeps ``import trainhub.retrieval`` free of optional imports until a backend is asked for.
    if name == "FaissIndex":
        from trainhub.retrieval.faiss_index import FaissIndex

        return FaissIndex
    if name == "AnnoyIndex":
        from trainhub.retrieval.annoy_index import AnnoyIndex

        return AnnoyIndex
    if name in ("MilvusIndex", "Milvus"):
        from trainhub.retrieval import milvus_index

        return getattr(milvus_index, name)
    raise AttributeError(f"module 'trainhub.retrieval' has no attribute {name!r}")
