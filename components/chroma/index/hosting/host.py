"""Embedded mode: the one process that opens the Edge index serves it to the others.

Qdrant Edge lets one process at a time open an index version, and incremental writes
must go through that process. So the indexer worker (which writes) *hosts* the engine:
:func:`hosted_engine` opens it once per process, takes ``<index_dir>/host.lock`` (flock,
released by the kernel if the process dies) and starts :class:`IndexHost`, a thread
serving the read side (search, get_vector, count, collection_info) on a unix socket.
The API and the recommender read through ``chroma.index.hosting.reader.HostedReader``.

Searches are answered by the host's threads while the worker thread indexes; Edge
releases nothing of the GIL while it builds a graph, so no graph is built in this
process: a re-index writes its new version in a child, and ``optimize`` builds the
graph of new points in a child on a copy of the live version (see
``EdgeQueryEngine.optimize`` and ``Settings.index_rebuild_ratio``).

In cluster mode (``index_backend=remote``) there is no host: every process talks to the
Qdrant server directly.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import socket
import socketserver
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

import numpy as np

from chroma.errors import ChromaError, NotFound, Unavailable
from chroma.index import QueryEngine, SearchFilter, StoredHit, open_query_engine
from chroma.index.base import MAX_K
from chroma.index.hosting.config import index_config, index_dir
from chroma.index.hosting.guard import LiveGuard
from chroma.index.hosting.wire import (
    error_header,
    filter_from_wire,
    records_from_wire,
    recv_frame,
    send_frame,
)
from chroma.locks import LockHeld, hold_pid_lock
from chroma.settings import Settings

__all__ = [
    "IndexHost", "engine_in_process", "host_guard", "hosted_engine", "search_guarded",
    "socket_path",
]

log = logging.getLogger(__name__)

SEARCH_SLICE = 16
"""Query vectors searched per engine call when a request carries many."""

_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS
_engines: dict[Any, QueryEngine] = {}
_guards: dict[Any, LiveGuard] = {}
_engines_lock = threading.Lock()


def socket_path(settings: Settings) -> Path:
    """``<index_dir>/host.sock``, or a name under the temp dir when that path is too long."""
    directory = index_dir(settings)
    path = directory / "host.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(str(directory).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"chroma-index-{digest}.sock"


def hosted_engine(settings: Settings) -> QueryEngine:
    """This process's read-write engine (one per configuration, opened on first use).

    Edge: also takes the host lock and serves reads to other processes; ``Unavailable``
    when another live process already hosts this index (run the operation through the
    queue instead of in-process). Remote: a plain client of the Qdrant server.
    """
    config = index_config(settings)
    with _engines_lock:
        engine = _engines.get(config)
        if engine is not None:
            return engine
        if config.backend != "edge":
            engine = open_query_engine(config)
        else:
            lock = _take_host_lock(index_dir(settings))
            engine = open_query_engine(config)
            host = IndexHost(engine, socket_path(settings), lock)
            host.start()
            atexit.register(host.stop)
            _guards[config] = host.guard
        _engines[config] = engine
        return engine


def engine_in_process(settings: Settings) -> QueryEngine | None:
    """The engine :func:`hosted_engine` opened in this process, if it did."""
    with _engines_lock:
        return _engines.get(index_config(settings))


def host_guard(settings: Settings) -> LiveGuard | None:
    """The :class:`LiveGuard` of the index this process hosts (``None``: not the host)."""
    with _engines_lock:
        return _guards.get(index_config(settings))


def search_guarded(
    engine: QueryEngine, guard: LiveGuard, key: str, queries: np.ndarray, k: int,
    search_filter: SearchFilter | None, overfetch: int, hnsw_ef: int | None = None,
) -> tuple[list[list[StoredHit]], bool]:
    """Hits of ``queries`` and whether they must be checked against the catalog; only
    then ``overfetch`` more per query (to make up for records deleted meanwhile)."""
    verify = guard.must_verify(key)
    limit = min(k + overfetch, MAX_K) if verify else k
    hits: list[list[StoredHit]] = []
    # Slices, so that a large batch (the recommender's) does not hold the engine (and,
    # for Edge, the GIL) for long: single searches of other clients interleave.
    for start in range(0, max(len(queries), 1), SEARCH_SLICE):
        hits.extend(engine.search_stored(key, queries[start:start + SEARCH_SLICE], limit,
                                         search_filter, hnsw_ef=hnsw_ef))
    return hits, verify


def _take_host_lock(directory: Path) -> IO[str]:
    try:
        return hold_pid_lock(directory / "host.lock")
    except LockHeld as held:
        raise Unavailable(
            f"the embedded index under {directory} is open in {held.owner} (the indexer "
            "worker); queue the operation (chroma op run KIND) instead of running it in "
            "this process"
        ) from None


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    engine: QueryEngine
    guard: LiveGuard

    def __init__(self, path: str) -> None:
        super().__init__(path, _Handler)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def hang_up(self) -> None:
        """Close every client connection (their next call reconnects, or finds us gone)."""
        with self.connections_lock:
            for sock in self.connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Handler(socketserver.BaseRequestHandler):
    """One client connection: frames in, frames out, until the client hangs up."""

    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        with self.server.connections_lock:
            self.server.connections.add(sock)
        try:
            self._serve(sock)
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(sock)

    def _serve(self, sock: socket.socket) -> None:
        while True:
            try:
                frame = recv_frame(sock)
            except (OSError, ValueError):
                return
            if frame is None:
                return
            header, body = frame
            try:
                reply, payload = _answer(self.server.engine, self.server.guard, header, body)
            except ChromaError as exc:
                reply, payload = error_header(exc), b""
            except Exception as exc:  # never let a bad request kill the connection thread
                log.exception("index host: %s failed", header.get("op"))
                reply, payload = error_header(Unavailable(f"index host error: {exc}")), b""
            try:
                send_frame(sock, reply, payload)
            except OSError:
                return


def _answer(
    engine: QueryEngine, guard: LiveGuard, header: dict[str, Any], body: bytes
) -> tuple[dict[str, Any], bytes]:
    op = header.get("op")
    key = str(header.get("key", ""))
    if op == "ping":
        return {"pid": os.getpid()}, b""
    if op == "search":
        queries = np.frombuffer(body, dtype=np.float32).reshape(header["shape"])
        k, search_filter = int(header["k"]), filter_from_wire(header.get("filter"))
        ef = header.get("hnsw_ef")
        hits, verify = search_guarded(engine, guard, key, queries, k, search_filter,
                                      int(header.get("overfetch", 0)),
                                      None if ef is None else int(ef))
        return {"hits": hits, "verify": verify}, b""  # see wire.hits_from_wire
    if op == "invalidate":
        guard.invalidate(key)
        return {}, b""
    if op == "upsert":
        upserted = _upsert_fresh(engine, guard, key, header, body)
        return {"upserted": max(upserted, 0), "missing": upserted < 0}, b""
    if op == "get_vector":
        vector = engine.get_vector(key, (header["dataset"], header["record_id"]))
        return {"shape": list(vector.shape)}, np.ascontiguousarray(vector, np.float32).tobytes()
    if op == "count":
        return {"count": engine.count(key, filter_from_wire(header.get("filter")))}, b""
    if op == "collection_info":
        info = engine.collection_info(key)
        return {"info": {"key": info.key, "version": info.version, "dimension": info.dimension,
                         "distance": info.distance, "points": info.points,
                         "indexed_points": info.indexed_points}}, b""
    raise Unavailable(f"index host: unknown request {op!r}")


def _upsert_fresh(
    engine: QueryEngine, guard: LiveGuard, key: str, header: dict[str, Any], body: bytes
) -> int:
    """Records just committed, straight into the live index (0 when refused, -1 when the
    set has no index yet: the index run their commit queued brings them in instead)."""
    if not guard.accepts(key, float(header["as_of"])):
        return 0
    records = records_from_wire(header["records"])
    vectors = np.frombuffer(body, dtype=np.float32).reshape(len(records), -1)
    try:
        return engine.upsert(key, records, vectors)
    except NotFound:  # no index yet: the first index run builds it from the feed
        return -1


class IndexHost:
    """Serves ``engine``'s read side, fresh upserts and invalidations on a unix socket
    from daemon threads."""

    def __init__(self, engine: QueryEngine, path: Path, lock: IO[str]) -> None:
        self.engine = engine
        self.path = path
        self.guard = LiveGuard()
        self._lock = lock
        self._server: _Server | None = None

    def start(self) -> None:
        # We hold the host lock, so a socket file left here belongs to a dead host.
        self.path.unlink(missing_ok=True)
        server = _Server(str(self.path))
        os.chmod(self.path, 0o600)
        server.engine = self.engine
        server.guard = self.guard
        self._server = server
        threading.Thread(target=server.serve_forever, name="index-host", daemon=True).start()
        log.info("index host serving %s on %s", self.engine.__class__.__name__, self.path)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.hang_up()
        self.path.unlink(missing_ok=True)
        self.engine.close()
        self._lock.close()
