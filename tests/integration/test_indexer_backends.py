"""The ``index``/``reindex`` operations and ``open_reader`` on both backends, in-process.

Records are committed to a real PostgreSQL and a local store; the operations run with a
hand-made ``OperationContext``; searches through ``open_reader`` are compared with numpy
brute force. The same cases run on Qdrant Edge and on the remote backend (qdrant-client
local mode as the server stand-in). Here the index itself is checked (no catalog filter
in between), so deletions and tag changes must really have reached it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from chroma.catalog import Catalog, Database, Operations, apply_migrations
from chroma.index import SearchFilter
from chroma.index.hosting import index_config, open_reader
from chroma.ingest import GroupCommitter
from chroma.ingest.validation import LogBatch
from chroma.keys import embedding_set_key
from chroma.operations.context import OperationContext
from chroma.operations.indexing import run_index, run_reindex
from chroma.settings import Settings
from chroma.storage import RecordBatch, open_store

pytestmark = pytest.mark.integration

DIM = 8


@dataclass
class Parts:
    settings: Settings
    catalog: Catalog
    operations: Operations
    committer: GroupCommitter
    es: dict[str, str]

    @property
    def key(self) -> str:
        return embedding_set_key(self.es)

    def run(self, kind: str) -> dict:
        op, _ = self.operations.enqueue(kind, self.key)
        store = open_store(self.settings)
        handler = run_index if kind == "index" else run_reindex
        return handler(OperationContext(op, self.settings, self.catalog, self.operations,
                                        store))["embedding_sets"][self.key]

    def log(self, dataset: str, split: str, ids: list[str], vectors: np.ndarray,
            tags: list[list[str]]) -> None:
        n = len(ids)
        records = RecordBatch(
            ids=ids, embeddings=vectors.astype(np.float32), input_uris=[None] * n,
            inference_classes=[None] * n, label_classes=["c"] * n, scores_json=[None] * n,
            tags=tags, metadata_json=[None] * n, dataset=dataset, split=split,
        )
        self.committer.commit([LogBatch(self.es, self.key, dataset, split, records)])


@pytest.fixture(params=["edge", "remote"])
def parts(request: pytest.FixtureRequest, own_database_url: str,
          tmp_path: Path) -> Iterator[Parts]:
    apply_migrations(own_database_url)
    settings = Settings(
        database_url=own_database_url, data_dir=tmp_path, storage_url=str(tmp_path / "store"),
        index_backend=request.param, qdrant_url=":memory:" if request.param == "remote" else None,
    )
    db = Database(own_database_url)
    db.open()
    catalog = Catalog(db)
    committer = GroupCommitter(catalog, open_store(settings))
    yield Parts(settings, catalog, catalog.operations, committer,
                {"model": "indexer-backends", "run": os.urandom(4).hex()})
    db.close()


def nearest(ids: list[str], vectors: np.ndarray, query: np.ndarray, k: int) -> list[str]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    order = np.argsort(1.0 - unit @ (query / np.linalg.norm(query)), kind="stable")[:k]
    return [ids[i] for i in order]


def searched(parts: Parts, query: np.ndarray, k: int, **filters: object) -> list[str]:
    reader = open_reader(parts.settings)
    hits = reader.search(parts.key, query, k, SearchFilter(**filters) if filters else None)
    return [n.record_id for n in hits[0]]


def test_index_then_changes_then_reindex(parts: Parts) -> None:
    rng = np.random.default_rng(11)
    train = rng.normal(size=(300, DIM))
    prod = rng.normal(size=(100, DIM))
    train_ids = [f"t{i}" for i in range(300)]
    prod_ids = [f"p{i}" for i in range(100)]
    parts.log("train", "training", train_ids, train, [[] for _ in train_ids])
    parts.log("prod", "production", prod_ids, prod, [[] for _ in prod_ids])

    first = parts.run("index")
    # no index yet: a version published at once and filled (400 points need no graph)
    assert first["points"] == 400 and first["published_first"]
    assert first["graph"] == "unchanged"
    ids, vectors = train_ids + prod_ids, np.vstack([train, prod])
    query = rng.normal(size=DIM)
    assert searched(parts, query, 10) == nearest(ids, vectors, query, 10)
    assert searched(parts, query, 5, split="production") == nearest(prod_ids, prod, query, 5)

    # deletions, tag changes and new records, then an incremental index
    gone = nearest(ids, vectors, query, 3)
    parts.catalog.delete_records("train" if gone[0].startswith("t") else "prod", gone[:1])
    parts.catalog.tag_records("prod", ["p1", "p2", "p3"], add=["hot"])
    more = rng.normal(size=(50, DIM))
    more_ids = [f"m{i}" for i in range(50)]
    parts.log("prod", "production", more_ids, more, [[] for _ in more_ids])
    second = parts.run("index")
    assert second["points"] == 449 and second["deleted"] == 1
    assert second["upserted"] == 53 and second["version"] == first["version"]
    keep = [i for i, rid in enumerate(ids) if rid != gone[0]]
    ids = [ids[i] for i in keep] + more_ids
    vectors = np.vstack([vectors[keep], more])
    assert searched(parts, query, 10) == nearest(ids, vectors, query, 10)
    assert sorted(searched(parts, query, 10, tags_any=("hot",))) == ["p1", "p2", "p3"]
    state = parts.catalog.changes.index_state(parts.key)
    assert state is not None and state.indexed_count == 449
    assert state.indexed_seq == parts.catalog.changes.latest_seq(parts.key)

    # nothing changed: an index operation is a no-op; a reindex switches versions
    assert parts.run("index")["upserted"] == 0
    rebuilt = parts.run("reindex")
    assert rebuilt["version"] == first["version"] + 1 and rebuilt["points"] == 449
    assert searched(parts, query, 10) == nearest(ids, vectors, query, 10)
    assert sorted(searched(parts, query, 10, tags_any=("hot",))) == ["p1", "p2", "p3"]


def test_index_config_follows_the_settings(tmp_path: Path) -> None:
    edge = index_config(Settings(data_dir=tmp_path))
    assert edge.backend == "edge" and edge.path == (tmp_path / "index").resolve()
    remote = index_config(Settings(index_backend="remote", qdrant_url="http://qdrant:6333"))
    assert remote.backend == "remote" and remote.url == "http://qdrant:6333"


def test_the_hosted_reader_answers_like_the_engine(tmp_path: Path) -> None:
    """The unix-socket host and client: same hits, same error classes, a clear 'down'."""
    from chroma.errors import InvalidInput, NotFound
    from chroma.index import IndexConfig, IndexedRecord, open_query_engine
    from chroma.index.hosting.host import IndexHost
    from chroma.index.hosting.reader import HostedReader, IndexHostDown

    engine = open_query_engine(IndexConfig(backend="edge", path=tmp_path / "index"))
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(200, DIM)).astype(np.float32)
    records = [IndexedRecord("ds", f"r{i}", "training", tags=("even",) if i % 2 == 0 else ())
               for i in range(200)]
    engine.reindex("k", DIM, "cosine", [(records, vectors)])
    host = IndexHost(engine, tmp_path / "host.sock", open(tmp_path / "host.lock", "a+"))  # noqa: SIM115
    host.start()
    reader = HostedReader(str(tmp_path / "host.sock"), wait_s=0.3)
    try:
        queries = rng.normal(size=(3, DIM)).astype(np.float32)
        search_filter = SearchFilter(tags_any=("even",), exclude=(("ds", "r0"),))
        assert reader.search("k", queries, 7, search_filter) == engine.search(
            "k", queries, 7, search_filter)
        assert reader.count("k", search_filter) == 99
        ref = ("ds", "r5")
        assert np.allclose(reader.get_vector("k", ref), engine.get_vector("k", ref))
        assert reader.collection_info("k") == engine.collection_info("k")
        with pytest.raises(NotFound):
            reader.search("missing", queries, 3)
        with pytest.raises(InvalidInput, match="dimension"):
            reader.search("k", np.ones(DIM + 1, np.float32), 3)
    finally:
        host.stop()
    with pytest.raises(IndexHostDown):
        reader.search("k", queries, 3)


def test_the_hosted_reader_waits_out_a_host_killed_mid_request(tmp_path: Path) -> None:
    """A host that accepts a request and dies unanswered is waited for, not reported.

    That is what a SIGKILLed indexer looks like for a moment: its socket still accepts,
    then every connection is reset. The read is repeated once a host serves again.
    """
    import socket
    import threading

    from chroma.index import IndexConfig, IndexedRecord, open_query_engine
    from chroma.index.hosting.host import IndexHost
    from chroma.index.hosting.reader import HostedReader

    path = tmp_path / "host.sock"
    dying = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dying.bind(str(path))
    dying.listen()
    engine = open_query_engine(IndexConfig(backend="edge", path=tmp_path / "index"))
    vectors = np.eye(DIM, dtype=np.float32)
    engine.reindex("k", DIM, "cosine",
                   [([IndexedRecord("ds", f"r{i}", "training") for i in range(DIM)], vectors)])
    host = IndexHost(engine, path, open(tmp_path / "host.lock", "a+"))  # noqa: SIM115

    def die_then_restart() -> None:
        connection, _ = dying.accept()
        connection.recv(16)  # the request arrived...
        connection.close()  # ...and the process died without answering
        dying.close()
        path.unlink()
        threading.Timer(0.3, host.start).start()  # the supervisor's restart

    threading.Thread(target=die_then_restart, daemon=True).start()
    reader = HostedReader(str(path), wait_s=10.0)
    try:
        hits = reader.search("k", vectors[3], 1)
    finally:
        reader.close()
        host.stop()
    assert [n.record_id for n in hits[0]] == ["r3"]


@pytest.mark.parametrize("parts", ["remote"], indirect=True)
def test_what_index_runs_change_during_a_rebuild_holds_the_moment_it_switches(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cluster mode: other workers' ``index`` operations keep applying the change feed to
    the live version while a ``reindex`` of the same set builds the next one. What they
    upsert or delete meanwhile must hold in the new version when the alias moves, not only
    after the rebuild's catch-up: a searchable record must never drop out of search, and a
    deleted one never come back (DESIGN §12)."""
    from chroma.operations import indexing

    rng = np.random.default_rng(5)
    base = rng.normal(size=(60, DIM))
    base_ids = [f"b{i}" for i in range(60)]
    parts.log("ds", "production", base_ids, base, [[] for _ in base_ids])
    parts.run("index")
    late = rng.normal(size=(5, DIM))
    late_ids = [f"late{i}" for i in range(5)]
    phase = {"build": False, "concurrent_done": False}
    seen_at_switch: list[tuple[list[str], str]] = []
    pages, apply_changes = indexing._pages, indexing._apply_changes

    def build_pages(ctx: OperationContext, key: str, after: int, up_to: int, *rest, **options):  # type: ignore[no-untyped-def]
        for loaded in pages(ctx, key, after, up_to, *rest, **options):
            yield loaded
            if after == 0 and not phase["build"]:  # the rebuild's first page is written
                phase["build"] = True
                parts.log("ds", "production", late_ids, late, [[] for _ in late_ids])
                parts.catalog.delete_records("ds", ["b0"])
                parts.run("index")  # another worker's index operation, meanwhile
                assert [searched(parts, v, 1)[0] for v in late] == late_ids
                phase["concurrent_done"] = True

    def catch_up(*args, **kwargs):  # type: ignore[no-untyped-def]
        if phase["concurrent_done"] and not seen_at_switch:  # switched, not caught up yet
            seen_at_switch.append(([searched(parts, v, 1)[0] for v in late],
                                   searched(parts, base[0], 1)[0]))
        return apply_changes(*args, **kwargs)

    monkeypatch.setattr(indexing, "_pages", build_pages)
    monkeypatch.setattr(indexing, "_apply_changes", catch_up)
    rebuilt = parts.run("reindex")

    assert phase["concurrent_done"] and rebuilt["version"] == 2
    assert seen_at_switch == [(late_ids, seen_at_switch[0][1])]
    assert seen_at_switch[0][1] != "b0"
    assert rebuilt["points"] == 64
    assert [searched(parts, v, 1)[0] for v in late] == late_ids
    assert searched(parts, base[0], 1)[0] != "b0"
