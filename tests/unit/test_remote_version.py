"""The remote backend reads the server's version on first use and acts on it.

The "server" is qdrant-client's in-memory mode behind a recording wrapper that reports a
chosen version from ``GET /`` (``info()``): a test double of an older or newer server's
*version answer*, not of its behaviour; the engine is configured with a server URL so it
takes the server path (version check, payload indexes).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from chroma.errors import Unavailable, UnsupportedVersion
from chroma.index import IndexConfig
from chroma.index import remote as remote_backend
from chroma.index.remote import (
    MIN_SERVER_VERSION,
    PAYLOAD_INDEX_HNSW_SINCE,
    TESTED_MAX_SERVER_VERSION,
    RemoteQueryEngine,
    check_server_version,
)

SERVER_URL = "http://qdrant.invalid:6333"  # never dialled: the client is injected
# The in-memory stand-in warns that the payload indexes a server path creates do nothing.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")


class VersionedServer:
    """Answers ``info()`` with ``version``; records every call with its arguments."""

    def __init__(self, version: str) -> None:
        self._inner = QdrantClient(location=":memory:")
        self._version = version
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def info(self) -> models.VersionInfo:
        self.calls.append(("info", (), {}))
        return models.VersionInfo(title="qdrant - vector search engine", version=self._version)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return method(*args, **kwargs)

        return call

    def named(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(args, kwargs) for called, args, kwargs in self.calls if called == name]

    def index_schemas(self) -> list[Any]:
        return [args[2] for args, _ in self.named("create_payload_index")]


def engine_on(server: VersionedServer, **config: Any) -> RemoteQueryEngine:
    return RemoteQueryEngine(
        IndexConfig(backend="remote", url=SERVER_URL, **config),
        client=server,  # type: ignore[arg-type]
    )


def test_the_supported_range_is_stated_and_holds_the_tested_version() -> None:
    assert MIN_SERVER_VERSION <= PAYLOAD_INDEX_HNSW_SINCE
    assert MIN_SERVER_VERSION[:2] <= TESTED_MAX_SERVER_VERSION
    assert check_server_version("1.19.0") == (1, 19, 0)
    assert check_server_version("v1.12.4") == (1, 12, 4)


@pytest.mark.parametrize("reported", ["1.11.3", "0.11.7", "", None, "latest"])
def test_versions_below_the_minimum_or_unreadable_are_refused(reported: str | None) -> None:
    with pytest.raises(UnsupportedVersion, match=r"1\.12\.0 or newer \(tested up to 1\.19\.x\)"):
        check_server_version(reported)


def test_an_old_server_is_refused_on_first_use_naming_both_versions() -> None:
    server = VersionedServer("1.11.3")
    with engine_on(server) as engine:
        refused = r"runs 1\.11\.3; Chroma needs Qdrant 1\.12\.0"
        with pytest.raises(UnsupportedVersion, match=refused):
            engine.ensure_collection("k", 4)
        with pytest.raises(Unavailable):  # an UnsupportedVersion is an Unavailable (503)
            engine.count("k")
    # Nothing but the version probe was sent (and the close).
    assert [name for name, _, _ in server.calls] == ["info", "info", "close"]


def test_a_newer_server_than_tested_works_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    server = VersionedServer("1.23.1")
    warnings = caplog.at_level(logging.WARNING, logger=remote_backend.__name__)
    with warnings, engine_on(server) as engine:
        engine.ensure_collection("k", 4)
        assert engine.server_version == (1, 23, 1)
        engine.count("k")
    assert "1.23.1, newer than the newest version Chroma was tested with (1.19.x)" in caplog.text
    assert len(server.named("info")) == 1  # read once, not per call


def test_servers_with_per_field_graph_switches_get_them() -> None:
    server = VersionedServer("1.19.0")
    with engine_on(server) as engine:
        engine.ensure_collection("k", 4)
    schemas = server.index_schemas()
    assert len(schemas) == 6
    assert all(schema.enable_hnsw is False for schema in schemas)
    (_, created), = server.named("create_collection")
    assert created["hnsw_config"].payload_m is None


@pytest.mark.parametrize(("filter_graph", "payload_m"), [(False, 0), (True, None)])
def test_servers_before_1_17_get_plain_indexes_and_payload_m_instead(
    filter_graph: bool, payload_m: int | None
) -> None:
    server = VersionedServer("1.12.4")
    with engine_on(server, filter_graph=filter_graph) as engine:
        engine.ensure_collection("k", 4)
    schemas = server.index_schemas()
    assert schemas == [models.PayloadSchemaType.KEYWORD] * 5 + [models.PayloadSchemaType.FLOAT]
    (_, created), = server.named("create_collection")
    assert created["hnsw_config"].payload_m == payload_m


def test_the_operators_default_qdrant_image_is_inside_the_supported_range() -> None:
    """The image a managed ChromaCluster runs must be one this backend was run against."""
    from chroma_operator.constants import DEFAULT_QDRANT_IMAGE

    version = check_server_version(DEFAULT_QDRANT_IMAGE.rsplit(":", 1)[1])
    assert version is not None and version >= MIN_SERVER_VERSION
    assert version[:2] <= remote_backend.TESTED_MAX_SERVER_VERSION
