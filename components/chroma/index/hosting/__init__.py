"""Embedded hosting of the query engine: one process opens the Edge index, others read it.

Owns: the mapping from ``Settings`` to an ``IndexConfig`` (``config.py``); the embedded
process model (``host.py``: the indexer worker hosts the Qdrant Edge index and serves reads
over a unix socket; ``wire.py``: the frames on that socket; ``reader.py``:
``open_reader(settings)``, which callers use without branching on the mode: the host in
embedded mode, the Qdrant server in the cluster).

Must not touch: the catalog (which hits are live is ``chroma.catalog.live``'s word), the
parquet store, HTTP. The ``index``/``reindex`` runs that write through the hosted engine are
in ``chroma.operations.indexing``.

Called by: the query API, the labelling runs and assessor (``open_reader``), the worker
(``hosted_engine``).
"""

from __future__ import annotations

from chroma.index.hosting.config import index_config, index_dir
from chroma.index.hosting.guard import LiveGuard
from chroma.index.hosting.host import host_guard
from chroma.index.hosting.reader import (
    IndexHostDown,
    QueryReader,
    answers_at_once,
    feed_fresh,
    invalidate,
    open_reader,
    search_checked,
)

__all__ = [
    "IndexHostDown",
    "LiveGuard",
    "QueryReader",
    "answers_at_once",
    "feed_fresh",
    "host_guard",
    "index_config",
    "index_dir",
    "invalidate",
    "open_reader",
    "search_checked",
]
