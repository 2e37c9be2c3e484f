"""The ANN index and query engine over Qdrant: one interface, two backends.

Owns: the vector index of every embedding set (one collection per ``embedding_set_key``,
point ids from ``chroma.keys.point_id``), its HNSW parameters, incremental writes
(upsert, delete, payload changes), full re-index with an atomic switch, and k-NN search
with payload filters.

Must not touch: the catalog, the parquet store or HTTP. Callers (the indexer operation,
``POST /api/v1/query``, the recommender) read records from storage/catalog and hand them
over as ``IndexedRecord`` + a float32 matrix; the version and counts this package
reports are theirs to record in the catalog.

Backends, chosen by ``IndexConfig.backend`` in ``open_query_engine``:

* ``edge``: Qdrant Edge in-process, shards under a directory (embedded mode);
* ``remote``: a Qdrant server through qdrant-client (cluster mode; qdrant-client's local
  mode stands in for the server in tests).
"""

from __future__ import annotations

from chroma.index.base import (
    CollectionInfo,
    Distance,
    IndexedRecord,
    Neighbour,
    QueryEngine,
    RecordRef,
    SearchFilter,
    StoredHit,
    neighbour_from_payload,
)
from chroma.index.config import IndexConfig

__all__ = [
    "CollectionInfo",
    "Distance",
    "IndexConfig",
    "IndexedRecord",
    "Neighbour",
    "QueryEngine",
    "RecordRef",
    "SearchFilter",
    "StoredHit",
    "neighbour_from_payload",
    "open_query_engine",
]


def open_query_engine(config: IndexConfig) -> QueryEngine:
    """The backend ``config`` names; callers never branch on the mode."""
    if config.backend == "edge":
        from chroma.index.edge import EdgeQueryEngine

        return EdgeQueryEngine(config)
    from chroma.index.remote import RemoteQueryEngine

    return RemoteQueryEngine(config)
