"""Nearest-neighbour retrieval behind one interface: ``add``, ``search(queries, k)``, ``save``, ``load``.

``TorchIndex`` (exact, no extra dependency) is imported eagerly; ``FaissIndex`` and
``AnnoyIndex`` load their backends only when accessed (extra: ``faiss``).
"""

from trainhub.retrieval.base import METRICS, VectorIndex
from trainhub.retrieval.exact import TorchIndex

__all__ = ["VectorIndex", "TorchIndex", "FaissIndex", "AnnoyIndex", "METRICS"]


def __getattr__(name: str):
    # Keeps ``import trainhub.retrieval`` free of optional imports until a backend is asked for.
    if name == "FaissIndex":
        from trainhub.retrieval.faiss_index import FaissIndex

        return FaissIndex
    if name == "AnnoyIndex":
        from trainhub.retrieval.annoy_index import AnnoyIndex

        return AnnoyIndex
    raise AttributeError(f"module 'trainhub.retrieval' has no attribute {name!r}")
