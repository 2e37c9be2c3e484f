"""Foreign errors become ``chroma.errors`` at each backend's edge, with the cause chained."""

from __future__ import annotations

import socket

import httpx
import numpy as np
import pytest
from qdrant_client.http.exceptions import UnexpectedResponse

from chroma.errors import ChromaError, Conflict, InvalidInput, NotFound, Unavailable, Unreachable
from chroma.index import IndexConfig, open_query_engine
from chroma.index import edge as edge_backend
from chroma.index import remote as remote_backend


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Service runtime error: failed to open WAL /x/wal: Kind(WouldBlock)", Unavailable),
        ("Vector dimension error: expected dim: 4, got 3", InvalidInput),
        ("Service runtime error: cannot load edge shard: directory /x does not exist", NotFound),
        ("Service runtime error: Shard is not initialized", Unavailable),
    ],
)
def test_edge_errors_map_by_message(message: str, expected: type[ChromaError]) -> None:
    cause = Exception(message)
    with pytest.raises(expected) as caught, edge_backend._translate_errors("doing it"):
        raise cause
    assert caught.value.__cause__ is cause
    assert caught.value.message.startswith("doing it")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, NotFound),
        (400, InvalidInput),
        (422, InvalidInput),
        (409, Conflict),  # a collection another process created first
        (401, Unavailable),
        (500, Unavailable),
        (503, Unreachable),
    ],
)
def test_remote_http_statuses_map_to_chroma_errors(
    status: int, expected: type[ChromaError]
) -> None:
    cause = UnexpectedResponse(status, "reason", b'{"status": "error"}', httpx.Headers())
    with pytest.raises(expected) as caught, remote_backend._translate_errors("doing it"):
        raise cause
    assert type(caught.value) is expected
    assert caught.value.__cause__ is cause


def test_chroma_errors_pass_through_untouched() -> None:
    original = NotFound("already ours")
    with pytest.raises(NotFound) as caught, remote_backend._translate_errors("doing it"):
        raise original
    assert caught.value is original


def test_an_unreachable_server_is_unavailable_not_a_crash() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = IndexConfig(backend="remote", url=f"http://127.0.0.1:{port}", timeout_s=2)
    with open_query_engine(config) as engine:  # opening does not touch the network
        with pytest.raises(Unreachable, match="unreachable") as caught:
            engine.search("some-key", np.zeros(4, np.float32), 3)
        assert caught.value.__cause__ is not None


def test_local_mode_already_exists_is_a_conflict_as_on_a_server() -> None:
    with pytest.raises(Conflict), remote_backend._translate_errors("creating"):
        raise ValueError("Collection chroma_x__v000001 already exists")
