"""The ANN indexer wired into the running system: operations, index host, readers.

Owns: the ``index`` and ``reindex`` operations (``operations.py``: catalog change feed +
parquet vectors -> query engine -> ``index_state``), the mapping from ``Settings`` to an
``IndexConfig`` (``config.py``), the embedded-mode process model (``host.py``: the
indexer worker hosts the Qdrant Edge index and serves reads over a unix socket;
``reader.py``: ``open_reader(settings)``, which callers use without branching on the
mode), and the catalog check that search hits are still live records (``live.py``).

Must not touch: the query-engine library itself (``chroma.index``), HTTP (the query
router in ``chroma.api.routers.query`` calls us), the catalog schema (we read it and
write ``index_state`` through ``chroma.catalog.Changes``).

Called by: ``chroma.control`` (handlers ``index``/``reindex``), the query API, and the
recommender (``open_reader``).
"""

from __future__ import annotations

from chroma.indexer.config import index_config, index_dir
from chroma.indexer.live import LiveRecord, embedding_set_shape, live_records
from chroma.indexer.reader import IndexHostDown, QueryReader, open_reader

__all__ = [
    "IndexHostDown",
    "LiveRecord",
    "QueryReader",
    "embedding_set_shape",
    "index_config",
    "index_dir",
    "live_records",
    "open_reader",
]
