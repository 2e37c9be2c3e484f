"""The index host's wire format: length-prefixed JSON headers with optional raw bytes.

One frame = 4-byte big-endian header length, the header (JSON), then ``nbytes`` raw bytes
(float32 vectors, C order) when the header says so. JSON and raw float32 rather than
pickle: the socket is local, but nothing that connects to it can make the host run code.
Errors travel as ``{"error": {"type", "message", "details"}}`` and come back out as the
same ``chroma.errors`` class.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import fields
from typing import Any

import orjson

from chroma import errors
from chroma.index import IndexedRecord, SearchFilter, StoredHit

__all__ = [
    "error_header",
    "filter_from_wire",
    "filter_to_wire",
    "hits_from_wire",
    "raise_from_header",
    "records_from_wire",
    "recv_frame",
    "send_frame",
]

_LENGTH = struct.Struct(">I")
MAX_HEADER = 64 * 1024 * 1024
_FILTER_FIELDS = tuple(field.name for field in fields(SearchFilter))


def send_frame(sock: socket.socket, header: dict[str, Any], body: bytes = b"") -> None:
    if body:
        header = {**header, "nbytes": len(body)}
    encoded = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    sock.sendall(_LENGTH.pack(len(encoded)) + encoded + body)


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or ``None`` when the peer closed the connection between frames."""
    prefix = _recv_exactly(sock, _LENGTH.size, eof_ok=True)
    if prefix is None:
        return None
    (length,) = _LENGTH.unpack(prefix)
    if length > MAX_HEADER:
        raise ConnectionError(f"index host frame header of {length} bytes is too large")
    header = orjson.loads(_recv_exactly(sock, length) or b"")
    nbytes = int(header.get("nbytes", 0))
    body = (_recv_exactly(sock, nbytes) or b"") if nbytes else b""
    return header, body


def _recv_exactly(sock: socket.socket, size: int, *, eof_ok: bool = False) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            if eof_ok and not chunks:
                return None
            raise ConnectionError("the index host connection closed mid-frame")
        chunks += chunk
    return bytes(chunks)


def error_header(exc: errors.ChromaError) -> dict[str, Any]:
    return {"error": {"type": type(exc).__name__, "message": exc.message,
                      "details": exc.details}}


def raise_from_header(header: dict[str, Any]) -> None:
    error = header.get("error")
    if error is None:
        return
    cls = getattr(errors, str(error.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.ChromaError)):
        cls = errors.Unavailable
    raise cls(error.get("message", "index host error"), details=error.get("details"))


def filter_to_wire(search_filter: SearchFilter | None) -> dict[str, Any] | None:
    """``None`` for no filter or one that selects everything (most queries: the host
    searches the same either way); else its fields, shallow (``asdict`` copies deeply,
    ~9 us a query)."""
    if search_filter is None or search_filter.is_empty():
        return None
    return {name: getattr(search_filter, name) for name in _FILTER_FIELDS}


def filter_from_wire(data: dict[str, Any] | None) -> SearchFilter | None:
    if data is None:
        return None
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    fields["exclude"] = tuple(tuple(ref) for ref in fields.get("exclude", ()))
    return SearchFilter(**fields)


def hits_from_wire(data: list[list[list[Any]]]) -> list[list[StoredHit]]:
    """Search hits as the host sends them: per query, ``[distance, stored payload]`` pairs
    (``chroma.index.StoredHit``; orjson writes the tuples as arrays). No ``Neighbour`` per
    hit on either side of the socket: for a batch of 100 vectors, making, encoding and
    decoding those (each field twice, in the object and in its payload) cost about a
    quarter of the engine's own search."""
    return [[(float(distance), payload) for distance, payload in row] for row in data]


def records_from_wire(data: list[dict[str, Any]]) -> list[IndexedRecord]:
    """``IndexedRecord``s sent as orjson writes dataclasses (tags arrive as a list)."""
    return [IndexedRecord(**{**item, "tags": tuple(item.get("tags") or ())}) for item in data]
