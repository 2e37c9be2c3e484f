"""The index host's wire format over a real socketpair: frames, filters, hits, errors.

No host process: both ends are in this test. A body larger than the socket buffer is
sent from a thread (``sendall`` blocks until the reader drains it).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import numpy as np
import orjson
import pytest

from chroma import errors
from chroma.index import Neighbour, SearchFilter, neighbour_from_payload
from chroma.index.hosting.wire import (
    MAX_HEADER,
    error_header,
    filter_from_wire,
    filter_to_wire,
    hits_from_wire,
    raise_from_header,
    recv_frame,
    send_frame,
)

WAIT_S = 10.0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    left.settimeout(WAIT_S)  # a bug shows as a timeout, never as a hung test
    right.settimeout(WAIT_S)
    yield left, right
    left.close()
    right.close()


def send_in_thread(sock: socket.socket, header: dict, body: bytes = b"") -> threading.Thread:
    sender = threading.Thread(target=send_frame, args=(sock, header, body))
    sender.start()
    return sender


def through_json(value: object) -> object:
    """What the far end sees of ``value``: the wire is JSON."""
    return orjson.loads(orjson.dumps(value))


# -- frames ---------------------------------------------------------------------------------


def test_a_header_only_frame_round_trips(pair) -> None:
    left, right = pair
    send_frame(left, {"op": "count", "key": "es-1", "n": 3})
    assert recv_frame(right) == ({"op": "count", "key": "es-1", "n": 3}, b"")


def test_an_empty_body_adds_no_byte_count(pair) -> None:
    left, right = pair
    send_frame(left, {"op": "ping"}, b"")
    header, body = recv_frame(right)
    assert header == {"op": "ping"} and body == b""


def test_a_body_round_trips_and_says_its_length(pair) -> None:
    left, right = pair
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    send_frame(left, {"op": "search", "dimension": 4}, vectors.tobytes())
    header, body = recv_frame(right)
    assert header == {"op": "search", "dimension": 4, "nbytes": 48}
    np.testing.assert_array_equal(np.frombuffer(body, dtype=np.float32).reshape(3, 4), vectors)


def test_a_body_larger_than_the_socket_buffer_round_trips(pair) -> None:
    left, right = pair
    body = np.random.default_rng(7).random(1_000_000, dtype=np.float32).tobytes()  # 4 MB
    sender = send_in_thread(left, {"op": "upsert"}, body)
    header, received = recv_frame(right)
    sender.join(WAIT_S)
    assert header["nbytes"] == len(body) and received == body


def test_frames_keep_their_order_and_boundaries(pair) -> None:
    left, right = pair
    frames = [({"i": i}, bytes([i]) * i) for i in range(5)]
    for header, body in frames:
        send_frame(left, header, body)
    received = [recv_frame(right) for _ in frames]
    assert [(h["i"], b) for h, b in received] == [(h["i"], b) for h, b in frames]


def test_numpy_values_in_a_header_travel_as_json(pair) -> None:
    left, right = pair
    send_frame(left, {"ids": np.array([1, 2, 3]), "score": np.float32(0.5)})
    header, _ = recv_frame(right)
    assert header == {"ids": [1, 2, 3], "score": 0.5}


# -- the end of a connection ----------------------------------------------------------------


def test_a_peer_closing_between_frames_reads_as_none(pair) -> None:
    left, right = pair
    send_frame(left, {"op": "last"})
    left.close()
    assert recv_frame(right) == ({"op": "last"}, b"")
    assert recv_frame(right) is None


@pytest.mark.parametrize("cut", ["in the length", "in the header", "in the body"])
def test_a_truncated_frame_is_a_connection_error(pair, cut: str) -> None:
    left, right = pair
    header = orjson.dumps({"op": "search", "nbytes": 16})
    whole = struct.pack(">I", len(header)) + header + b"\0" * 16
    ends = {"in the length": 2, "in the header": 4 + len(header) // 2,
            "in the body": len(whole) - 3}
    left.sendall(whole[: ends[cut]])
    left.close()
    with pytest.raises(ConnectionError, match="closed mid-frame"):
        recv_frame(right)


def test_an_oversized_header_length_is_refused_before_reading_it(pair) -> None:
    left, right = pair
    left.sendall(struct.pack(">I", MAX_HEADER + 1))
    with pytest.raises(ConnectionError, match="too large"):
        recv_frame(right)


# -- errors ---------------------------------------------------------------------------------


CHROMA_ERRORS = [cls for cls in vars(errors).values()
                 if isinstance(cls, type) and issubclass(cls, errors.ChromaError)]


@pytest.mark.parametrize("cls", CHROMA_ERRORS, ids=lambda cls: cls.__name__)
def test_an_error_header_raises_the_same_class(pair, cls: type[errors.ChromaError]) -> None:
    left, right = pair
    send_frame(left, error_header(cls("it broke", details={"field": "k"})))
    header, _ = recv_frame(right)
    with pytest.raises(cls) as raised:
        raise_from_header(header)
    assert type(raised.value) is cls
    assert (raised.value.message, raised.value.details) == ("it broke", {"field": "k"})


def test_several_error_classes_are_covered() -> None:
    assert {"InvalidInput", "NotFound", "Conflict", "Unavailable"} <= {
        cls.__name__ for cls in CHROMA_ERRORS}


@pytest.mark.parametrize("type_name", ["KeyError", "NoSuchError", "Operations", None])
def test_an_unknown_or_foreign_error_type_raises_unavailable(type_name: str | None) -> None:
    header = {"error": {"type": type_name, "message": "odd", "details": None}}
    with pytest.raises(errors.Unavailable, match="odd") as raised:
        raise_from_header(header)
    assert type(raised.value) is errors.Unavailable


def test_an_error_without_a_message_still_raises() -> None:
    with pytest.raises(errors.Unavailable, match="index host error"):
        raise_from_header({"error": {"type": "Unavailable"}})


def test_a_header_without_an_error_raises_nothing() -> None:
    raise_from_header({"op": "search", "hits": []})


# -- filters and hits -----------------------------------------------------------------------


@pytest.mark.parametrize("search_filter", [
    None,
    SearchFilter(datasets=("cam-1", "cam-2"), split="production",
                 inference_classes=("cat",), label_classes=("dog", "cow"),
                 tags_any=("night",), logged_from=1.5e9, logged_until=1.7e9,
                 exclude=(("cam-1", "r1"), ("cam-2", "r2"))),
    SearchFilter(exclude=(("cam-1", "r1"),)),
    SearchFilter(logged_from=0.0),
], ids=["none", "every-field", "exclude-only", "zero-instant"])
def test_a_filter_round_trips(search_filter: SearchFilter | None) -> None:
    assert filter_from_wire(through_json(filter_to_wire(search_filter))) == search_filter


def test_a_filter_that_selects_everything_travels_as_none() -> None:
    """Most queries have no filter: nothing to encode, and the host searches the same."""
    assert filter_to_wire(SearchFilter()) is None
    assert filter_from_wire(through_json(filter_to_wire(SearchFilter()))) is None


def test_a_filter_round_trips_over_a_socket(pair) -> None:
    left, right = pair
    search_filter = SearchFilter(datasets=("a",), exclude=(("a", "x"),))
    send_frame(left, {"filter": filter_to_wire(search_filter)})
    header, _ = recv_frame(right)
    assert filter_from_wire(header["filter"]) == search_filter


def test_hits_round_trip_over_a_socket(pair) -> None:
    """(distance, stored payload) pairs as the engine answers them come out the same, and
    make the same ``Neighbour``s as the engine's own ``search`` would."""
    left, right = pair
    hits = [[
        (0.125, {"dataset": "cam-1", "record_id": "r1", "split": "production",
                 "input_uri": "s3://b/1.png", "tags": ["night"], "logged_at": 1.5}),
        (2.0, {"dataset": "cam-2", "record_id": "r2", "split": "training"}),
    ], []]
    send_frame(left, {"hits": hits})
    header, _ = recv_frame(right)
    got = hits_from_wire(header["hits"])
    assert got == hits
    assert [neighbour_from_payload(p, d) for d, p in got[0]] == [
        Neighbour("r1", "cam-1", "production", 0.125, "s3://b/1.png",
                  {"dataset": "cam-1", "record_id": "r1", "split": "production",
                   "input_uri": "s3://b/1.png", "inference_class": None,
                   "label_class": None, "tags": ["night"], "logged_at": 1.5}),
        Neighbour("r2", "cam-2", "training", 2.0, None,
                  {"dataset": "cam-2", "record_id": "r2", "split": "training",
                   "input_uri": None, "inference_class": None, "label_class": None,
                   "tags": []}),
    ]
