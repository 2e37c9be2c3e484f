"""An index-backend outage delays the ``index`` operation; it does not end it (issue 17).

Real parts: PostgreSQL, a local parquet store, the worker loop with the real ``index``
handler, and the remote backend's real qdrant-client. While "down", that client talks to
a closed port on loopback (a real connection refused, translated to ``Unreachable``);
when the server "comes back", the same engine's client is qdrant-client's local mode
(the server stand-in of the remote suites), through ``RemoteQueryEngine(client=...)``.
Retry delays are 0 here (``operation_outage_retry_max_s``) so nothing waits for real.

Before the fix the operation failed its three attempts and stayed failed: the records
logged during the outage were never indexed without another commit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from chroma.catalog import Catalog, Database, apply_migrations
from chroma.control.worker import Worker, WorkerServices
from chroma.index.hosting import host, index_config
from chroma.index.remote import RemoteQueryEngine
from chroma.ingest import GroupCommitter
from chroma.ingest.validation import LogBatch
from chroma.keys import embedding_set_key
from chroma.settings import Settings
from chroma.storage import RecordBatch, open_store
from tests.conftest import free_port

pytestmark = pytest.mark.integration

DIM = 8


class SwitchableServer:
    """The client the engine holds: a refused connection while ``down``, else the
    in-memory stand-in. Only which real client answers changes."""

    def __init__(self, down: QdrantClient, up: QdrantClient) -> None:
        self.down = True
        self._clients = (up, down)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clients[self.down], name)

    def close(self) -> None:
        for client in self._clients:
            client.close()


@dataclass
class Rig:
    settings: Settings
    catalog: Catalog
    committer: GroupCommitter
    worker: Worker
    server: SwitchableServer
    engine: RemoteQueryEngine
    es: dict[str, str]

    @property
    def key(self) -> str:
        return embedding_set_key(self.es)

    def log(self, ids: list[str]) -> None:
        n = len(ids)
        vectors = np.random.default_rng(len(ids)).normal(size=(n, DIM)).astype(np.float32)
        records = RecordBatch(
            ids=ids, embeddings=vectors, input_uris=[None] * n, inference_classes=[None] * n,
            label_classes=[None] * n, scores_json=[None] * n, tags=[[] for _ in ids],
            metadata_json=[None] * n, dataset="prod", split="production",
        )
        self.committer.commit([LogBatch(self.es, self.key, "prod", "production", records)])

    def index_lag(self) -> int:
        (lag,) = [x for x in self.catalog.changes.feed_lag() if x.key == self.key]
        return lag.index_lag


@pytest.fixture
def rig(own_database_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    apply_migrations(own_database_url)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(
        database_url=own_database_url, data_dir=tmp_path, storage_url=str(tmp_path / "store"),
        index_backend="remote", qdrant_url=closed, operation_outage_retry_max_s=0,
        operation_outage_giveup_s=3600,
    )
    config = index_config(settings)
    server = SwitchableServer(
        down=QdrantClient(url=closed, timeout=2, check_compatibility=False),
        up=QdrantClient(location=":memory:"))
    engine = RemoteQueryEngine(config, client=server)  # type: ignore[arg-type]
    # The worker's index handler opens this engine through hosted_engine(settings).
    monkeypatch.setitem(host._engines, config, engine)
    db = Database(own_database_url)
    db.open()
    catalog = Catalog(db)
    store = open_store(settings)
    services = WorkerServices(settings, db, catalog, catalog.operations, store)
    worker = Worker(services, "indexer", ["index"])
    yield Rig(settings, catalog, GroupCommitter(catalog, store), worker, server, engine,
              {"model": "outage", "run": os.urandom(4).hex()})
    engine.close()
    db.close()


def test_an_outage_delays_indexing_and_its_end_covers_what_was_missed(rig: Rig) -> None:
    ops = rig.catalog.operations
    rig.log([f"a{i}" for i in range(50)])
    op, _ = ops.enqueue("index", rig.key, requested_by="trigger")
    for tries in range(1, 6):  # more tries than max_attempts (3): none is spent
        assert rig.worker.run_one()
        waiting = ops.get(op.id)
        assert (waiting.state, waiting.attempts, waiting.outage_retries) == ("queued", 0, tries)
        assert waiting.message is not None
        assert waiting.message.startswith("waiting for the query engine: ")
        assert "unreachable" in waiting.message
    rig.log([f"b{i}" for i in range(20)])  # logged during the outage
    again, created = ops.enqueue("index", rig.key, requested_by="trigger")
    assert not created and again.id == op.id  # the waiting operation covers them
    assert rig.index_lag() == 70

    rig.server.down = False
    assert rig.worker.run_one()
    done = ops.get(op.id)
    assert done.state == "succeeded", done.error
    assert rig.index_lag() == 0
    assert rig.engine.count(rig.key) == 70
    assert [r["outcome"] for r in ops.runs(op.id)] == ["unreachable"] * 5 + ["succeeded"]
