"""The remote backend's searches: the default ``hnsw_ef`` follows the collection's size.

A fixed ef 128 gave recall@10 0.910 at 1M (below the issue's 0.95); the Edge backend grows
it with the shard's points (``base.scaled_ef``). The remote backend reads the size from the
server at most once a ``_SIZE_REFRESH_S``, not once a search.
"""

from __future__ import annotations

import pytest
from conftest import RemoteServer, record_search_efs
from index_data import gaussian_mixture, make_records
from qdrant_faults import ServerDouble

import chroma.index.remote as remote_engine
from chroma.index import base

pytestmark = pytest.mark.integration

KEY = "sized"


def test_the_default_hnsw_ef_follows_the_collection_s_size_read_once_a_minute(
    qdrant_server: RemoteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = record_search_efs(monkeypatch, remote_engine)
    doubles: list[ServerDouble] = []

    def counted(*args: object, **kwargs: object) -> ServerDouble:
        doubles.append(ServerDouble(*args, **kwargs))  # type: ignore[arg-type]
        return doubles[-1]

    searcher = qdrant_server.open(wrap=counted)
    writer = qdrant_server.open()
    records, vectors = make_records(1_000, seed=3), gaussian_mixture(1_000, 16, seed=3)
    writer.ensure_collection(KEY, 16)
    writer.upsert(KEY, records[:50], vectors[:50])
    searcher.search(KEY, vectors[:1], k=1)  # learns the size: 50 points, below the reference
    writer.upsert(KEY, records, vectors)
    hits = searcher.search(KEY, vectors[:3], k=1)  # the size read a moment ago still holds
    monkeypatch.setattr(remote_engine, "_SIZE_REFRESH_S", 0.0)
    searcher.search(KEY, vectors[:3], k=1)  # read again: 1,000 points
    searcher.search(KEY, vectors[:3], k=1, hnsw_ef=40)  # asked: used as it is, no read
    assert [row[0].record_id for row in hits] == [r.record_id for r in records[:3]]
    assert used == [128, 128, base.scaled_ef(128, 1_000), 40] and used[2] == 256
    reads = [name for name in doubles[0].calls if name in ("get_collection", "count")]
    assert len(reads) == 3  # the shape once (get_collection + count), the size once more
