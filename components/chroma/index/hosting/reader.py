"""``open_reader(settings)``: the read side of the query engine, in any process, any mode.

Callers (``POST /api/v1/query``, the recommender) get a :class:`QueryReader` and never
branch on the mode:

* embedded (``index_backend=edge``): a :class:`HostedReader`, a client of the index host
  that runs in the process of the indexer worker loop (``chroma.index.hosting.host``: the
  workers process, or under ``chroma run`` with ``index_host=api`` the API process); in
  that process itself, the hosted engine (:class:`InProcessReader`: no socket);
* cluster (``index_backend=remote``): the remote engine, straight to the Qdrant server.

When no host is listening (the indexer worker has not run an index operation since it
started, or it is restarting), the reader queues an ``index`` operation for the
embedding set, which makes the worker open the index and host it, and waits up to
``Settings.index_host_wait_s`` before answering ``Unavailable``.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import Any, Protocol

import numpy as np

from chroma.errors import NotFound, Unavailable
from chroma.index import (
    CollectionInfo,
    IndexedRecord,
    Neighbour,
    QueryEngine,
    RecordRef,
    SearchFilter,
    StoredHit,
    neighbour_from_payload,
    open_query_engine,
)
from chroma.index.base import MAX_K
from chroma.index.hosting.config import index_config
from chroma.index.hosting.guard import LiveGuard
from chroma.index.hosting.host import engine_in_process, host_guard, search_guarded, socket_path
from chroma.index.hosting.wire import (
    filter_to_wire,
    hits_from_wire,
    raise_from_header,
    recv_frame,
    send_frame,
)
from chroma.settings import Settings


class OperationQueue(Protocol):
    """Where a reader queues an ``index`` operation to wake the host (the catalog's
    ``Operations``; typed here so the index never imports the catalog)."""

    def enqueue(self, kind: str, embedding_set_key: str | None, *,
                requested_by: str = ...) -> tuple[Any, bool]: ...

__all__ = [
    "HostedReader", "IndexHostDown", "QueryReader", "answers_at_once", "feed_fresh",
    "invalidate", "open_reader", "search_checked",
]

log = logging.getLogger(__name__)

FAST_TIMEOUT_S = 0.25
"""Longest a search with ``wait=False`` (on the API's event loop) waits for the host."""
FAST_BACKOFF_S = 5.0
"""After such a search timed out, how long searches go the waiting way only."""


class IndexHostDown(Unavailable):
    """No process hosts the embedded index right now."""


class QueryReader(Protocol):
    """What searching needs from the query engine; ``QueryEngine`` satisfies it."""

    def search(
        self, key: str, queries: np.ndarray, k: int = 10, filter: SearchFilter | None = None,
        *, hnsw_ef: int | None = None,
    ) -> list[list[Neighbour]]: ...

    def get_vector(self, key: str, ref: RecordRef) -> np.ndarray: ...

    def count(self, key: str, filter: SearchFilter | None = None) -> int: ...

    def collection_info(self, key: str) -> CollectionInfo: ...

    def close(self) -> None: ...


class HostedReader:
    """A :class:`QueryReader` over the index host's unix socket (thread-safe, pooled)."""

    def __init__(
        self, path: str, *, timeout_s: float = 30.0, wait_s: float = 10.0,
        operations: OperationQueue | None = None,
    ) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.wait_s = wait_s
        self.operations = operations
        self._idle: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._closed = False
        self._woken: dict[str, float] = {}
        self._woken_lock = threading.Lock()
        self._slow_until = 0.0

    # -- QueryReader ------------------------------------------------------------------

    def search(
        self, key: str, queries: np.ndarray, k: int = 10, filter: SearchFilter | None = None,
        *, hnsw_ef: int | None = None,
    ) -> list[list[Neighbour]]:
        matrix = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if matrix.ndim == 1:
            matrix = matrix[np.newaxis, :]
        header, _ = self._call(
            key, {"op": "search", "key": key, "k": k, "filter": filter_to_wire(filter),
                  "shape": list(matrix.shape), "hnsw_ef": hnsw_ef}, matrix.tobytes())
        return [[neighbour_from_payload(payload, distance) for distance, payload in row]
                for row in hits_from_wire(header["hits"])]

    def get_vector(self, key: str, ref: RecordRef) -> np.ndarray:
        header, body = self._call(
            key, {"op": "get_vector", "key": key, "dataset": ref[0], "record_id": ref[1]})
        return np.frombuffer(body, dtype=np.float32).reshape(header["shape"]).copy()

    def count(self, key: str, filter: SearchFilter | None = None) -> int:
        header, _ = self._call(key, {"op": "count", "key": key, "filter": filter_to_wire(filter)})
        return int(header["count"])

    def collection_info(self, key: str) -> CollectionInfo:
        header, _ = self._call(key, {"op": "collection_info", "key": key})
        return CollectionInfo(**header["info"])

    def close(self) -> None:
        self._closed = True
        self._drain()

    # -- the host's own verbs (see ``chroma.index.hosting.guard``) ---------------------

    def search_checked(
        self, key: str, queries: np.ndarray, k: int, filter: SearchFilter | None,
        overfetch: int, *, wait: bool = True, hnsw_ef: int | None = None,
    ) -> tuple[list[list[StoredHit]], bool]:
        """Hits, and whether the host says they must be checked against the catalog.

        ``wait=False`` (a caller on an event loop): no waiting for a host that is down,
        at most ``FAST_TIMEOUT_S`` for the answer, and after one such timeout none at all
        for ``FAST_BACKOFF_S`` (the host is busy, e.g. building a graph): ``Unavailable``,
        and the caller asks again from a thread that may wait."""
        if not wait and time.monotonic() < self._slow_until:
            raise Unavailable("the index host was slow a moment ago")
        matrix = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if matrix.ndim == 1:
            matrix = matrix[np.newaxis, :]
        request = {"op": "search", "key": key, "k": k, "filter": filter_to_wire(filter),
                   "shape": list(matrix.shape), "overfetch": overfetch, "hnsw_ef": hnsw_ef}
        try:
            header, _ = self._call(key, request, matrix.tobytes(), wait=wait,
                                   timeout_s=None if wait else FAST_TIMEOUT_S)
        except Unavailable as exc:
            if not wait and not isinstance(exc, IndexHostDown):
                self._slow_until = time.monotonic() + FAST_BACKOFF_S
            raise
        return hits_from_wire(header["hits"]), bool(header.get("verify", True))

    def invalidate(self, key: str) -> None:
        """Tell the host that records of ``key`` were deleted or changed (no waiting: a
        host that is not up starts with every set unverified anyway)."""
        self._call(key, {"op": "invalidate", "key": key}, wait=False)

    def upsert_fresh(
        self, key: str, records: list[IndexedRecord], vectors: np.ndarray, as_of: float
    ) -> int:
        """Just-committed records into the live index; how many the host took (-1: the
        set has no index yet)."""
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        header, _ = self._call(key, {"op": "upsert", "key": key, "records": records,
                                     "as_of": as_of}, matrix.tobytes(), wait=False)
        return -1 if header.get("missing") else int(header.get("upserted", 0))

    # -- transport --------------------------------------------------------------------

    def _call(
        self, key: str, header: dict[str, Any], body: bytes = b"", *, wait: bool = True,
        timeout_s: float | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        """One request; stale connections are dropped, a missing or dying host woken
        (only with ``wait``; without, a host that is not listening is ``IndexHostDown``).

        Every request is a read or idempotent (an upsert of deterministic point ids, an
        invalidation), so repeating one after a lost connection is harmless: a host killed
        mid-request (its socket still accepted for a moment) is waited for like a host
        that is not listening yet. Only a timeout (``timeout_s``, default ``timeout_s`` of
        the reader) is final: the host is alive but busy, and asking again would double
        the wait.
        """
        if self._closed:
            raise Unavailable("the index reader is closed")
        limit = self.timeout_s if timeout_s is None else timeout_s
        deadline: float | None = None
        while True:
            pooled = False
            try:
                sock, pooled = self._connection()
                frame = self._exchange(sock, header, body, limit)
            except TimeoutError as exc:
                raise Unavailable(f"the index host did not answer in {limit:g} s",
                                  details=str(exc)) from exc
            except OSError as exc:
                self._drain()  # the host restarted or died: every pooled connection is stale
                if pooled:
                    continue
                if not wait:
                    raise IndexHostDown("the embedded index is not being served",
                                        details=str(exc)) from exc
                if deadline is None:
                    deadline = time.monotonic() + self.wait_s
                    self._wake(key)
                if time.monotonic() >= deadline:
                    raise IndexHostDown(
                        "the embedded index is not being served (the indexer worker is "
                        "starting or restarting); an index operation was queued, retry shortly",
                        details=str(exc)) from exc
                time.sleep(0.1)
                continue
            self._idle.put(sock)
            raise_from_header(frame[0])
            return frame

    def _exchange(
        self, sock: socket.socket, header: dict[str, Any], body: bytes, timeout_s: float
    ) -> tuple[dict[str, Any], bytes]:
        """Send one request frame and read its answer; the socket is closed on failure
        (an answer may still be on its way: the connection is out of step)."""
        try:
            if timeout_s != self.timeout_s:
                sock.settimeout(timeout_s)
            send_frame(sock, header, body)
            frame = recv_frame(sock)
            if frame is None:
                raise ConnectionError("the index host closed the connection")
            if timeout_s != self.timeout_s:
                sock.settimeout(self.timeout_s)
            return frame
        except OSError:
            sock.close()
            raise

    def _connection(self) -> tuple[socket.socket, bool]:
        """An idle pooled connection (``True``) or a new one (``False``)."""
        try:
            return self._idle.get_nowait(), True
        except queue.Empty:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        return sock, False

    def _drain(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def _wake(self, key: str) -> None:
        """Queue an ``index`` operation: the worker that runs it opens and hosts the index."""
        if self.operations is None:
            return
        with self._woken_lock:
            now = time.monotonic()
            if now - self._woken.get(key, -1e9) < 5.0:
                return
            self._woken[key] = now
        try:
            op, created = self.operations.enqueue("index", key, requested_by="query")
        except NotFound:
            return
        except Exception:  # waking is best effort; the wait below decides
            log.warning("could not queue an index operation to wake the host", exc_info=True)
            return
        if created:
            log.info("index host down: queued index operation #%d for %s", op.id, key)


_readers: dict[Any, QueryReader] = {}
_by_settings: dict[int, tuple[Settings, QueryReader]] = {}
"""The reader of each ``Settings`` object seen (kept alive here, so its id stays its own)."""
_readers_lock = threading.Lock()


def open_reader(settings: Settings, *, operations: OperationQueue | None = None) -> QueryReader:
    """The process's reader for ``settings`` (cached; thread-safe; do not close it).

    ``operations`` lets an embedded reader wake the index host by queueing an ``index``
    operation when none is listening.
    """
    known = _by_settings.get(id(settings))
    if known is not None and known[0] is settings:  # the query path: no path resolving
        return known[1]
    config = index_config(settings)
    with _readers_lock:
        reader = _readers.get(config)
        if reader is not None:
            _by_settings[id(settings)] = (settings, reader)
            return reader
        if (hosted := engine_in_process(settings)) is not None:
            # This process hosts the index (the indexer): share its engine.
            guard = host_guard(settings)
            reader = hosted if guard is None else InProcessReader(hosted, guard)
        elif config.backend != "edge":
            reader = open_query_engine(config)
        else:
            reader = HostedReader(str(socket_path(settings)),
                                  wait_s=settings.index_host_wait_s, operations=operations)
        _readers[config] = reader
        _by_settings[id(settings)] = (settings, reader)
        return reader


class InProcessReader:
    """The reader of the process that hosts the index: its engine, plus the host's verbs."""

    def __init__(self, engine: QueryEngine, guard: LiveGuard) -> None:
        self.engine = engine
        self.guard = guard

    def search(
        self, key: str, queries: np.ndarray, k: int = 10, filter: SearchFilter | None = None,
        *, hnsw_ef: int | None = None,
    ) -> list[list[Neighbour]]:
        return self.engine.search(key, queries, k, filter, hnsw_ef=hnsw_ef)

    def get_vector(self, key: str, ref: RecordRef) -> np.ndarray:
        return self.engine.get_vector(key, ref)

    def count(self, key: str, filter: SearchFilter | None = None) -> int:
        return self.engine.count(key, filter)

    def collection_info(self, key: str) -> CollectionInfo:
        return self.engine.collection_info(key)

    def close(self) -> None:
        """The engine belongs to the host (closed when the process exits)."""

    def search_checked(
        self, key: str, queries: np.ndarray, k: int, filter: SearchFilter | None,
        overfetch: int, hnsw_ef: int | None = None,
    ) -> tuple[list[list[StoredHit]], bool]:
        matrix = np.asarray(queries, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[np.newaxis, :]
        return search_guarded(self.engine, self.guard, key, matrix, k, filter, overfetch,
                              hnsw_ef)

    def invalidate(self, key: str) -> None:
        self.guard.invalidate(key)

    def upsert_fresh(
        self, key: str, records: list[IndexedRecord], vectors: np.ndarray, as_of: float
    ) -> int:
        if not self.guard.accepts(key, as_of):
            return 0
        try:
            return self.engine.upsert(key, records, vectors)
        except NotFound:
            return -1


def search_checked(
    reader: QueryReader, key: str, queries: np.ndarray, k: int,
    filter: SearchFilter | None, overfetch: int, *, wait: bool = True,
    hnsw_ef: int | None = None,
) -> tuple[list[list[StoredHit]], bool]:
    """The hits of ``queries`` (``StoredHit``: distance, stored payload) and whether they
    must be checked against the catalog.

    Embedded: the host knows (``chroma.index.hosting.guard``), and only then sends
    ``overfetch`` more hits per query. Remote (a Qdrant server shared by many API
    replicas, with no host to tell): always checked, with the extra hits."""
    if isinstance(reader, HostedReader):
        return reader.search_checked(key, queries, k, filter, overfetch, wait=wait,
                                     hnsw_ef=hnsw_ef)
    if isinstance(reader, InProcessReader):
        return reader.search_checked(key, queries, k, filter, overfetch, hnsw_ef)
    rows = reader.search(key, queries, min(k + overfetch, MAX_K), filter, hnsw_ef=hnsw_ef)
    return [[(n.distance, n.payload) for n in row] for row in rows], True


def answers_at_once(reader: QueryReader) -> bool:
    """Whether a search may be asked from an event loop (``wait=False``): the embedded
    index, hosted elsewhere or in this process, whose searches take a millisecond (in
    this process nothing waits but for the GIL, which a thread would wait for too). A
    remote server's may take longer, and its hits are always checked against the
    catalog."""
    return isinstance(reader, HostedReader | InProcessReader)


def invalidate(settings: Settings, key: str) -> None:
    """Records of ``key`` were deleted or changed: searches check the catalog until an
    index run has applied it. Call after the catalog commit, before acknowledging.

    Best effort by design: a host that cannot be reached is down (or restarting) and
    starts with every set unverified; the remote backend is always verified."""
    reader = open_reader(settings)
    method = getattr(reader, "invalidate", None)
    if method is None:
        return
    try:
        method(key)
    except Unavailable as exc:
        log.info("index host not told of a change to %s (%s); it checks on start", key,
                 exc.message)


def feed_fresh(
    settings: Settings, key: str, records: list[IndexedRecord], vectors: np.ndarray,
    as_of: float,
) -> int:
    """Just-committed records straight into the live embedded index (``as_of``: a
    ``time.monotonic()`` reading from before their commit); the number taken, 0 when the
    index run their commit queued must bring them (remote backend: always 0); -1 when
    the set has no index yet."""
    reader = open_reader(settings)
    method = getattr(reader, "upsert_fresh", None)
    if method is None:
        return 0
    return int(method(key, records, vectors, as_of))
