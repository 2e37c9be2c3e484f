"""The Python client speaks ``chroma.errors`` only: a server that is down or silent is
``Unreachable`` (an ``Unavailable``), never an httpx exception; a JSONL file's bad line is
named ``file:line``. Real sockets on loopback, no server needed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chroma import errors
from chroma.client import Client
from chroma.client.client import _at_line, read_jsonl


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_server_that_is_down_raises_unreachable_not_httpx() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with Client(url, retries=2, progress=False) as client, \
            pytest.raises(errors.Unavailable) as raised:
        client.status()
    assert isinstance(raised.value, errors.Unreachable)
    assert not isinstance(raised.value, httpx.HTTPError)
    assert isinstance(raised.value.__cause__, httpx.ConnectError)  # the cause is kept
    assert f"cannot reach the Chroma server at {url}" in raised.value.message


def test_a_server_that_does_not_answer_in_time_raises_unreachable(silent_server: str) -> None:
    with Client(silent_server, timeout=0.3, retries=1, progress=False) as client, \
            pytest.raises(errors.Unreachable, match=r"no answer .* in time"):
        client.health()


def test_logging_to_a_server_that_is_down_raises_unreachable() -> None:
    with Client(f"http://127.0.0.1:{_free_port()}", retries=1, progress=False) as client, \
            pytest.raises(errors.Unreachable):
        client.log([1.0, 2.0], embedding_set={"model": "m"}, dataset="d", split="training")


def test_a_malformed_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "buffer.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": "b", "embedding": [1,\n')
    with pytest.raises(errors.InvalidInput, match=r"buffer\.jsonl:3: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"id": "a"}\n[1, 2]\n')
    with pytest.raises(errors.InvalidInput, match=r"buffer\.jsonl:2: expected a JSON object"):
        read_jsonl(path)


def test_blank_lines_keep_the_numbering(tmp_path: Path) -> None:
    path = tmp_path / "buffer.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": "b"}\n')
    assert read_jsonl(path) == ([{"id": "a"}, {"id": "b"}], [1, 3])


def test_a_refused_record_is_named_by_its_file_line() -> None:
    refused = errors.InvalidInput("HTTP 422: invalid log request: records.1.embedding: ...",
                                  details=[{"loc": ["records", "1", "embedding"], "msg": "x"}])
    named = _at_line(refused, "buf.jsonl", [10, 12, 13])
    assert isinstance(named, errors.InvalidInput)
    assert named.message.startswith("buf.jsonl:12: HTTP 422: invalid log request")
    unlocated = _at_line(errors.Conflict("HTTP 409: bound elsewhere"), "buf.jsonl", [10, 13])
    assert unlocated.message.startswith("buf.jsonl:10-13: ") and unlocated.status_code == 409
