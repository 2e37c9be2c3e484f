"""Fixtures for the query-engine suites: one engine per backend (data: ``index_data``).

``engine_factory`` opens the backend named by the ``backend`` parameter, so every test
that takes it runs on Qdrant Edge and on the remote backend, with the same data and the
same assertions.

The remote backend talks to the server ``remote_server`` picks, the one place that
chooses: a real Qdrant server at ``CHROMA_TEST_QDRANT_URL`` (optional
``CHROMA_TEST_QDRANT_API_KEY``) when set, else the best stand-in available here,
qdrant-client's in-memory mode. Never a skip: some server always answers.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient
from qdrant_faults import ServerDouble

from chroma.index import IndexConfig, QueryEngine, open_query_engine
from chroma.index.remote import RemoteQueryEngine

BACKENDS = ("edge", "remote")
QDRANT_URL_ENV = "CHROMA_TEST_QDRANT_URL"
QDRANT_API_KEY_ENV = "CHROMA_TEST_QDRANT_API_KEY"

EngineFactory = Callable[[], QueryEngine]
Wrap = Callable[..., ServerDouble]


@dataclass
class RemoteServer:
    """The Qdrant server the remote backend's tests use; every engine opened here shares it.

    ``config``: how engines reach it (a real server gets a per-test collection prefix, so
    tests never see each other's collections). In memory, one qdrant-client instance is the
    "server", behind one lock because it is not thread-safe.
    """

    config: IndexConfig
    shared: QdrantClient | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    opened: list[RemoteQueryEngine] = field(default_factory=list)

    @property
    def is_real(self) -> bool:
        return self.shared is None

    def connect(self) -> QdrantClient:
        """A client of this server: a new connection, or the shared in-memory instance."""
        if self.shared is not None:
            return self.shared
        return QdrantClient(
            url=self.config.url, api_key=self.config.api_key, check_compatibility=False
        )

    def open(self, wrap: Wrap = ServerDouble, **overrides: Any) -> RemoteQueryEngine:
        """An engine on this server whose client is ``wrap``ped (a fault double, see
        ``qdrant_faults``; the default only forwards). ``overrides``: ``IndexConfig`` fields."""
        client: Any = wrap(self.connect(), lock=self.lock, shared=not self.is_real)
        engine = RemoteQueryEngine(replace(self.config, **overrides), client=client)
        self.opened.append(engine)
        return engine

    def close(self) -> None:
        if self.is_real:  # leave a shared server as we found it
            cleanup = RemoteQueryEngine(self.config)
            for name in _collections_with_prefix(cleanup, self.config.collection_prefix):
                cleanup._client.delete_collection(name)
            self.opened.append(cleanup)
        for engine in self.opened:
            engine.close()
        if self.shared is not None:
            self.shared.close()


def remote_server() -> RemoteServer:
    """The one place that picks the remote backend's server (add other stand-ins here)."""
    url = os.environ.get(QDRANT_URL_ENV)
    if url:
        prefix = f"chroma_test_{uuid.uuid4().hex[:8]}_"
        api_key = os.environ.get(QDRANT_API_KEY_ENV) or None
        return RemoteServer(
            IndexConfig(backend="remote", url=url, api_key=api_key, collection_prefix=prefix)
        )
    return RemoteServer(
        IndexConfig(backend="remote", url=":memory:"), shared=QdrantClient(location=":memory:")
    )


def _collections_with_prefix(engine: RemoteQueryEngine, prefix: str) -> list[str]:
    names = [c.name for c in engine._client.get_collections().collections]
    return [name for name in names if name.startswith(prefix)]


def record_search_efs(monkeypatch: pytest.MonkeyPatch, engine_module: Any) -> list[int]:
    """The ``hnsw_ef`` of each search ``engine_module`` (an index backend) makes from now
    on, its reference size cut to 100 points so 1,000 are 10x it (default ef 256)."""
    from chroma.index import base

    monkeypatch.setattr(base, "EF_REFERENCE_POINTS", 100)
    used: list[int] = []

    def recorded(*args: Any) -> int:
        used.append(base.search_ef(*args))
        return used[-1]

    monkeypatch.setattr(engine_module, "search_ef", recorded)
    return used


@pytest.fixture
def qdrant_server() -> Iterator[RemoteServer]:
    server = remote_server()
    yield server
    server.close()


def backend_config(backend: str, path: Path) -> IndexConfig:
    if backend == "edge":
        return IndexConfig(backend="edge", path=path / "edge")
    # qdrant-client local mode persisted under a path: the server's API, in-process.
    return IndexConfig(backend="remote", path=path / "qdrant-local")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def engine_factory(
    backend: str, tmp_path: Path, qdrant_server: RemoteServer
) -> Iterator[EngineFactory]:
    """Opens engines on one shared location; closes them all at teardown. A real server
    is that location itself; otherwise local mode on disk, so a reopened engine finds
    what the closed one wrote."""
    opened: list[QueryEngine] = []

    def open_engine() -> QueryEngine:
        if backend == "remote" and qdrant_server.is_real:
            return qdrant_server.open()
        engine = open_query_engine(backend_config(backend, tmp_path))
        opened.append(engine)
        return engine

    yield open_engine
    for engine in opened:
        engine.close()


@pytest.fixture
def engine(backend: str, tmp_path: Path, qdrant_server: RemoteServer) -> Iterator[QueryEngine]:
    """A fresh engine; the remote one on ``remote_server``'s choice."""
    if backend == "remote":
        yield qdrant_server.open()
        return
    with open_query_engine(backend_config(backend, tmp_path)) as opened:
        yield opened
