"""Fixtures for the query-engine suites: one engine per backend (data: ``index_data``).

``engine_factory`` opens the backend named by the ``backend`` parameter, so every test
that takes it runs on Qdrant Edge and on qdrant-client (local mode standing in for a
Qdrant server), with the same data and the same assertions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chroma.index import IndexConfig, QueryEngine, open_query_engine

BACKENDS = ("edge", "remote")

EngineFactory = Callable[[], QueryEngine]


def backend_config(backend: str, path: Path) -> IndexConfig:
    if backend == "edge":
        return IndexConfig(backend="edge", path=path / "edge")
    # qdrant-client local mode persisted under a path: the server's API, in-process.
    return IndexConfig(backend="remote", path=path / "qdrant-local")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def engine_factory(backend: str, tmp_path: Path) -> Iterator[EngineFactory]:
    """Opens engines on one shared location; closes them all at teardown."""
    opened: list[QueryEngine] = []

    def open_engine() -> QueryEngine:
        engine = open_query_engine(backend_config(backend, tmp_path))
        opened.append(engine)
        return engine

    yield open_engine
    for engine in opened:
        engine.close()


@pytest.fixture
def engine(backend: str, tmp_path: Path) -> Iterator[QueryEngine]:
    """A fresh engine; the remote stand-in in memory (its on-disk mode is slow and only
    ``engine_factory``'s restart tests need it)."""
    if backend == "edge":
        config = backend_config(backend, tmp_path)
    else:
        config = IndexConfig(backend="remote", url=":memory:")
    with open_query_engine(config) as opened:
        yield opened
