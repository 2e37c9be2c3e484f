"""Cluster backend: a Qdrant server through ``qdrant-client``.

Each embedding set is an alias ``<prefix><key>`` pointing at one versioned collection
``<prefix><key>__v000001``, ``__v000002``, ... Searches and writes go through the alias,
so a full re-index builds the next collection, waits until the server has indexed it
(status green) and then moves the alias in one ``update_collection_aliases`` request:
the server applies the delete+create pair atomically, and searches never see a partial
collection. Old collections stay until ``drop_old_versions``. While a version is being
built, upserts, deletes and payload changes (other workers' ``index`` runs) go to it as
well as to the live one, so nothing they did is undone for a moment when the alias moves.

``url=":memory:"`` or a ``path`` without ``url`` selects qdrant-client's *local mode*, the
test stand-in for a server (brute force; fine below ~20k points). It is not thread-safe,
so calls are serialised with a lock in that mode only.

Server versions: the first call that reaches a server reads its version (``GET /``) and
refuses one older than ``MIN_SERVER_VERSION`` with ``UnsupportedVersion``; newer than
``TESTED_MAX_SERVER_VERSION`` works with a warning. Opening the engine touches no network,
so an unreachable server surfaces per call as ``Unreachable`` and the API can start and
report not-ready.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import httpx
import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from chroma.errors import (
    ChromaError,
    Conflict,
    InvalidInput,
    NotFound,
    Unavailable,
    Unreachable,
    UnsupportedVersion,
)
from chroma.index.base import (
    CollectionInfo,
    Distance,
    IndexedRecord,
    Neighbour,
    QueryEngine,
    RecordRef,
    SearchFilter,
    as_matrix,
    check_dimension,
    check_distance,
    check_k,
    check_key,
    check_mutable_fields,
    check_records,
    neighbour_from_payload,
    score_to_distance,
    search_ef,
    stored_vector,
)
from chroma.index.config import IndexConfig
from chroma.keys import point_id

__all__ = [
    "MIN_SERVER_VERSION",
    "PAYLOAD_INDEX_HNSW_SINCE",
    "TESTED_MAX_SERVER_VERSION",
    "RemoteQueryEngine",
    "ServerVersion",
]

log = logging.getLogger(__name__)

ServerVersion = tuple[int, int, int]
"""``(major, minor, patch)`` of a Qdrant server."""

MIN_SERVER_VERSION: ServerVersion = (1, 12, 0)
"""Oldest Qdrant server this backend talks to; older ones are refused (``UnsupportedVersion``).

Every request it sends exists from 1.12 on, and every field qdrant-client 1.20 requires in
the answers it reads is in 1.12's (checked against Qdrant's OpenAPI documents v1.12.x to
v1.19.x, not against a running 1.12 server): the batched Query API (since 1.10), the grey
collection status, ``payload_m`` in the HNSW config, keyword and float payload indexes.
1.12 because the operator deployed 1.12.4 until Nov 2026, so existing clusters keep
working; qdrant-client itself is tested only against the three latest minor versions."""

TESTED_MAX_SERVER_VERSION: tuple[int, int] = (1, 19)
"""Newest ``(major, minor)`` run against a real server (v1.19.0 by hand, with qdrant-client
1.20: the query, recommendation and quickstart system tests pass). A newer server is used,
with a warning in the log, because Qdrant keeps its REST API backwards compatible."""

PAYLOAD_INDEX_HNSW_SINCE: ServerVersion = (1, 17, 0)
"""First server whose keyword/float payload-index parameters take ``enable_hnsw``. Older
servers get plain ``keyword``/``float`` indexes and, when ``IndexConfig.filter_graph`` is
off, ``payload_m=0`` in the collection's HNSW config: the same effect for all fields at once
(a 1.12 server builds per-value links only ``if payload_m > 0``)."""

_VERSION_PATTERN = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")

_QDRANT_DISTANCE = {
    "cosine": models.Distance.COSINE,
    "dot": models.Distance.DOT,
    "euclid": models.Distance.EUCLID,
}
_CHROMA_DISTANCE: dict[models.Distance, Distance] = {
    qdrant: chroma for chroma, qdrant in _QDRANT_DISTANCE.items()
}
_KEYWORD_FIELDS = ("dataset", "split", "inference_class", "label_class", "tags")
_VERSION_SEPARATOR = "__v"
_GREEN_POLL_S = 0.2
_GREEN_POLL_MAX_S = 2.0  # a long build is polled gently, not five times a second
_GREY_RETRIGGER_S = 5.0  # a still-grey collection is nudged again after this long
_ALIAS_POLL_S = 0.05
_SIZE_REFRESH_S = 60.0
"""How old the points count a search's default ``hnsw_ef`` is scaled by may get: one
``get_collection`` round trip a minute per key instead of one per search (the ef grows
with the 0.3th power of the size, so a count a minute stale moves it by nothing)."""
# Statuses a server (or a proxy in front of it) answers while it cannot serve for a moment.
_TRANSIENT_STATUSES = (502, 503, 504)


@contextmanager
def _translate_errors(action: str) -> Iterator[None]:
    """qdrant-client errors (server, transport, local mode) as ``chroma.errors``."""
    try:
        yield
    except ChromaError:
        raise
    except UnexpectedResponse as exc:
        detail = exc.content.decode("utf-8", "replace")[:500]
        if exc.status_code == 404:
            raise NotFound(f"{action}: {detail}") from exc
        if exc.status_code in (400, 422):
            raise InvalidInput(f"{action}: {detail}") from exc
        if exc.status_code == 409:  # e.g. a collection created concurrently by another process
            raise Conflict(f"{action}: {detail}") from exc
        if exc.status_code in (401, 403):
            raise Unavailable(
                f"{action}: Qdrant refused the API key ({exc.status_code}); "
                "check CHROMA_QDRANT_API_KEY"
            ) from exc
        if exc.status_code in _TRANSIENT_STATUSES:
            raise Unreachable(f"{action}: Qdrant answered {exc.status_code}: {detail}") from exc
        raise Unavailable(f"{action}: Qdrant answered {exc.status_code}: {detail}") from exc
    except (ResponseHandlingException, httpx.HTTPError, ConnectionError, TimeoutError) as exc:
        raise Unreachable(f"{action}: Qdrant is unreachable: {exc}") from exc
    except ValueError as exc:  # local mode reports missing collections and bad input so
        message = str(exc).lower()
        if "not found" in message:
            raise NotFound(f"{action}: {exc}") from exc
        if "already exists" in message:  # where a server answers 409
            raise Conflict(f"{action}: {exc}") from exc
        raise InvalidInput(f"{action}: {exc}") from exc
    except RuntimeError as exc:  # local mode after close, grpc failures
        raise Unavailable(f"{action}: {exc}") from exc


@contextmanager
def _build_dropped_meanwhile() -> Iterator[None]:
    """A write into a build in progress that the build's own failure dropped is moot."""
    try:
        yield
    except NotFound:
        log.info("a build in progress was dropped during a write to it; the live version has it")


class RemoteQueryEngine(QueryEngine):
    """``QueryEngine`` over a Qdrant server (or qdrant-client local mode in tests)."""

    def __init__(self, config: IndexConfig, *, client: QdrantClient | None = None) -> None:
        """``client``: an already built qdrant-client to use instead of one made from
        ``config`` (tests put a fault-injecting double of the server there)."""
        self._config = config
        self._local_mode = config.url is None or config.url == ":memory:"
        self._client = client if client is not None else _make_client(config)
        self._serialise: AbstractContextManager[Any] = (
            threading.RLock() if self._local_mode else nullcontext()
        )
        # Shape of each key's live collection, so a search needs no metadata round trip.
        self._shapes: dict[str, tuple[int, Distance]] = {}
        # Points of each key's live collection and when they were read (see _graph_size).
        self._sizes: dict[str, tuple[int, float]] = {}
        self._closed = False
        # Read from the server on first use; local mode speaks the client's own version.
        self._server_version: ServerVersion | None = None
        self._version_lock = threading.Lock()

    @property
    def server_version(self) -> ServerVersion | None:
        """The server's version once a call has reached it (``None`` before, and in local mode)."""
        return self._server_version

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the query engine is closed")
        if not self._local_mode and self._server_version is None:
            self._connect()

    def _connect(self) -> None:
        """Read the server's version once; refuse an unsupported one before using it."""
        with self._version_lock:
            if self._server_version is not None:
                return
            with _translate_errors("reading the Qdrant server version"):
                reported = self._client.info().version
            version = check_server_version(reported)
            self._server_version = version

    def _supports_payload_index_hnsw(self) -> bool:
        version = self._server_version
        return version is None or version >= PAYLOAD_INDEX_HNSW_SINCE

    # -- names ------------------------------------------------------------------------

    def _alias(self, key: str) -> str:
        return f"{self._config.collection_prefix}{check_key(key)}"

    def _version_name(self, key: str, version: int) -> str:
        return f"{self._alias(key)}{_VERSION_SEPARATOR}{version:06d}"

    def _versions(self, key: str) -> list[int]:
        prefix = self._alias(key) + _VERSION_SEPARATOR
        with self._serialise, _translate_errors("listing collections"):
            names = [c.name for c in self._client.get_collections().collections]
        suffixes = (name[len(prefix) :] for name in names if name.startswith(prefix))
        return sorted(int(suffix) for suffix in suffixes if suffix.isdigit())

    def _live_collection(self, key: str) -> str | None:
        alias = self._alias(key)
        with self._serialise, _translate_errors("reading aliases"):
            aliases = self._client.get_aliases().aliases
        return next((a.collection_name for a in aliases if a.alias_name == alias), None)

    def _version_of(self, key: str, collection: str) -> int:
        return int(collection[len(self._alias(key)) + len(_VERSION_SEPARATOR) :])

    # -- shape cache ------------------------------------------------------------------

    def _graph_size(self, key: str) -> int:
        """The points of ``key``'s live collection, at most ``_SIZE_REFRESH_S`` old: what a
        search's default ``hnsw_ef`` is scaled by (``base.scaled_ef``; a fixed ef 128 gave
        recall@10 0.910 at 1M). The server's own approximate tally: one metadata read."""
        known = self._sizes.get(key)
        if known is not None and time.monotonic() - known[1] < _SIZE_REFRESH_S:
            return known[0]
        with self._serialise, _translate_errors(f"reading the size of {key}"):
            points = self._client.get_collection(self._alias(key)).points_count or 0
        self._sizes[key] = (points, time.monotonic())
        return points

    def _shape(self, key: str) -> tuple[int, Distance]:
        shape = self._shapes.get(key)
        if shape is None:
            info = self.collection_info(key)
            shape = (info.dimension, info.distance)
        return shape

    # -- building a version -----------------------------------------------------------

    def _create_version(self, key: str, version: int, dimension: int, distance: Distance) -> str:
        """Create one version's collection with its payload indexes; ``Conflict`` if it exists."""
        name = self._version_name(key, version)
        config = self._config
        graph = config.filter_graph  # see IndexConfig.filter_graph
        per_field = self._supports_payload_index_hnsw()
        with self._serialise, _translate_errors(f"creating collection {name}"):
            self._client.create_collection(
                collection_name=name,
                vectors_config=models.VectorParams(
                    size=dimension, distance=_QDRANT_DISTANCE[distance]
                ),
                hnsw_config=models.HnswConfigDiff(
                    m=config.hnsw_m,
                    ef_construct=config.hnsw_ef_construct,
                    full_scan_threshold=config.full_scan_threshold_kb,
                    # Servers before 1.17 cannot switch the links off per field: all at once.
                    payload_m=None if per_field or graph else 0,
                ),
            )
            if self._local_mode:
                return name  # local mode scans exactly and warns that indexes do nothing
            for field_name, schema in _payload_schemas(graph, per_field):
                self._client.create_payload_index(name, field_name, schema, wait=True)
        return name

    def _write_points(
        self,
        collection: str,
        dimension: int,
        records: Sequence[IndexedRecord],
        vectors: np.ndarray,
    ) -> int:
        matrix = as_matrix(vectors, dimension)
        check_records(records, matrix)
        batch_size = self._config.upsert_batch_size
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            batch = models.Batch(
                ids=[point_id(record.dataset, record.record_id) for record in chunk],
                vectors=matrix[start : start + batch_size].tolist(),
                payloads=[record.stored_payload() for record in chunk],
            )
            with self._serialise, _translate_errors(f"upserting into {collection}"):
                self._client.upsert(collection_name=collection, points=batch, wait=True)
        return len(records)

    def _wait_until_indexed(self, collection: str) -> None:
        """Block until the server reports the collection green (optimizers done).

        Grey means optimizations are pending but not triggered, as after a server restart
        mid-build; it stays grey until an update arrives, so an empty optimizers-config
        update (Qdrant's documented trigger) is sent, again every few seconds while grey.
        Gives up after ``IndexConfig.optimize_timeout_s`` with ``Unavailable`` naming the
        status: a wait is bounded even when the server never finishes.
        """
        bound = self._config.optimize_timeout_s
        started = time.monotonic()
        poll = _GREEN_POLL_S
        last_trigger = -_GREY_RETRIGGER_S
        while True:
            status = self._collection_status(collection)
            now = time.monotonic()
            if status == models.CollectionStatus.GREEN:
                return
            if status == models.CollectionStatus.RED:
                raise Unavailable(f"Qdrant reports collection {collection} as failed (red)")
            if status == models.CollectionStatus.GREY and now - last_trigger >= _GREY_RETRIGGER_S:
                self._trigger_optimizers(collection)
                last_trigger = now
            if now - started + poll > bound:
                raise Unavailable(
                    f"collection {collection} still {status.value} after {now - started:.0f} s "
                    f"(bound: index optimize_timeout_s={bound:g}); its points stay searchable "
                    "(exactly, until indexed): retry optimize later"
                )
            time.sleep(poll)
            poll = min(poll * 1.5, _GREEN_POLL_MAX_S)

    def _collection_status(self, collection: str) -> models.CollectionStatus:
        with self._serialise, _translate_errors(f"reading collection {collection}"):
            return self._client.get_collection(collection).status

    def _trigger_optimizers(self, collection: str) -> None:
        log.info("collection %s is grey (optimizations pending): triggering them", collection)
        with self._serialise, _translate_errors(f"triggering optimizers of {collection}"):
            self._client.update_collection(
                collection_name=collection, optimizers_config=models.OptimizersConfigDiff()
            )

    def _point_alias_at(self, key: str, collection: str, previous: str | None) -> None:
        alias = self._alias(key)
        operations: list[Any] = []
        if previous is not None:
            operations.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
            )
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
            )
        )
        with self._serialise, _translate_errors(f"switching alias {alias}"):
            self._client.update_collection_aliases(change_aliases_operations=operations)

    # -- QueryEngine: collections -----------------------------------------------------

    def ensure_collection(
        self, key: str, dimension: int, distance: Distance = "cosine"
    ) -> CollectionInfo:
        self._check_open()
        check_key(key)
        check_dimension(dimension)
        check_distance(distance)
        if self._live_collection(key) is None:
            self._create_first_version(key, dimension, distance)
        info = self.collection_info(key)
        if (info.dimension, info.distance) != (dimension, distance):
            raise Conflict(
                f"index {key} exists with dimension {info.dimension} and {info.distance} "
                f"distance, not {dimension} and {distance}"
            )
        return info

    def _create_first_version(self, key: str, dimension: int, distance: Distance) -> None:
        """Create a version and point the alias at it, tolerating concurrent creators.

        Processes that pick the same version number race on ``create_collection``: the
        losers get 409 (``Conflict``) and wait for the winner's alias. One that picked
        another number checks the alias before and after pointing it, and defers to a
        collection already live. Qdrant overwrites an existing alias without a
        compare-and-set, so two creators whose alias updates land within one round trip
        of each other can still disagree; the later one wins and the other's collection
        is left for ``drop_old_versions``.
        """
        version = max(self._versions(key), default=0) + 1
        try:
            name = self._create_version(key, version, dimension, distance)
        except Conflict:
            self._await_alias(key, self._version_name(key, version))
            return
        if self._live_collection(key) is None:
            try:
                self._point_alias_at(key, name, None)
            except ChromaError:
                if self._live_collection(key) is None:
                    raise
        live = self._live_collection(key)
        if live != name:  # another creator's collection is live: use theirs, drop ours
            with self._serialise, _translate_errors(f"dropping {name}"):
                self._client.delete_collection(name)

    def _await_alias(self, key: str, collection: str) -> None:
        """Wait (up to ``timeout_s``) for a concurrent creator of ``collection`` to alias it."""
        deadline = time.monotonic() + self._config.timeout_s
        while self._live_collection(key) is None:
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"collection {collection} was created by another process, which did not "
                    f"make it live within {self._config.timeout_s:g} s; retry"
                )
            time.sleep(_ALIAS_POLL_S)

    def collection_info(self, key: str) -> CollectionInfo:
        self._check_open()
        collection = self._live_collection(key)
        if collection is None:
            raise NotFound(f"no index for embedding set {key}")
        with self._serialise, _translate_errors(f"reading collection {collection}"):
            described = self._client.get_collection(collection)
            points = self._client.count(collection, exact=True).count
        params = described.config.params.vectors
        if not isinstance(params, models.VectorParams):
            raise Unavailable(f"collection {collection} has named vectors; Chroma did not make it")
        shape = (params.size, _CHROMA_DISTANCE[params.distance])
        self._shapes[key] = shape
        self._sizes[key] = (points, time.monotonic())
        # Local mode has no graph and reports no count: everything is scanned exactly.
        indexed = 0 if self._local_mode else described.indexed_vectors_count or 0
        return CollectionInfo(
            key, self._version_of(key, collection), *shape, points, min(indexed, points)
        )

    def drop_collection(self, key: str) -> None:
        self._check_open()
        if self._live_collection(key) is not None:
            with self._serialise, _translate_errors(f"dropping alias of {key}"):
                self._client.update_collection_aliases(
                    change_aliases_operations=[
                        models.DeleteAliasOperation(
                            delete_alias=models.DeleteAlias(alias_name=self._alias(key))
                        )
                    ]
                )
        for version in self._versions(key):
            with self._serialise, _translate_errors(f"dropping version {version} of {key}"):
                self._client.delete_collection(self._version_name(key, version))
        self._shapes.pop(key, None)
        self._sizes.pop(key, None)

    # -- QueryEngine: writes ----------------------------------------------------------

    def upsert(self, key: str, records: Sequence[IndexedRecord], vectors: np.ndarray) -> int:
        self._check_open()
        dimension, _ = self._shape(key)
        for build in self._builds_in_progress(key):
            with _build_dropped_meanwhile():
                self._write_points(build, dimension, records, vectors)
        return self._write_points(self._alias(key), dimension, records, vectors)

    def delete(self, key: str, refs: Iterable[RecordRef]) -> None:
        self._check_open()
        ids: list[models.ExtendedPointId] = [point_id(ds, rid) for ds, rid in refs]
        if not ids:
            return
        for build in self._builds_in_progress(key):
            with _build_dropped_meanwhile():
                self._delete_points(build, ids)
        self._delete_points(self._alias(key), ids)

    def _delete_points(self, collection: str, ids: list[models.ExtendedPointId]) -> None:
        with self._serialise, _translate_errors(f"deleting from {collection}"):
            self._client.delete(
                collection_name=collection,
                points_selector=models.PointIdsList(points=ids),
                wait=True,
            )

    def set_payload(self, key: str, refs: Iterable[RecordRef], fields: Mapping[str, Any]) -> None:
        self._check_open()
        payload = check_mutable_fields(fields)
        ids = [point_id(dataset, record_id) for dataset, record_id in refs]
        if not ids or not payload:
            return
        for build in self._builds_in_progress(key):
            with _build_dropped_meanwhile():
                self._set_present_payload(build, ids, payload)
        self._set_present_payload(self._alias(key), ids, payload)

    def _set_present_payload(
        self, collection: str, ids: list[models.ExtendedPointId], payload: dict[str, Any]
    ) -> None:
        with self._serialise, _translate_errors(f"setting payload in {collection}"):
            # Only points that exist: set_payload must never create a payload-only point.
            present = [r.id for r in self._client.retrieve(collection, ids, with_payload=False)]
            if present:
                self._client.set_payload(collection, payload=payload, points=present, wait=True)

    def _builds_in_progress(self, key: str) -> list[str]:
        """Versions newer than the live one: builds under way (or left by a failed one,
        which the next build's ``drop_old_versions`` removes). Read afresh for every write:
        a build that starts after this read reads the change feed after it too."""
        live = self._live_collection(key)
        if live is None:
            return []
        live_version = self._version_of(key, live)
        return [self._version_name(key, v) for v in self._versions(key) if v > live_version]

    def optimize(self, key: str) -> None:
        self._check_open()
        collection = self._live_collection(key)
        if collection is None:
            raise NotFound(f"no index for embedding set {key}")
        self._wait_until_indexed(collection)

    def reindex(
        self,
        key: str,
        dimension: int,
        distance: Distance,
        batches: Iterable[tuple[Sequence[IndexedRecord], np.ndarray]],
        *,
        graph: bool = True,
    ) -> CollectionInfo:
        del graph  # the server's optimizers build it, whatever we ask
        self._check_open()
        check_key(key)
        check_dimension(dimension)
        check_distance(distance)
        previous = self._live_collection(key)
        version = max(self._versions(key), default=0) + 1
        name = self._create_version(key, version, dimension, distance)
        try:
            for records, vectors in batches:
                self._write_points(name, dimension, records, vectors)
            self._wait_until_indexed(name)
            self._point_alias_at(key, name, previous)
        except BaseException:
            with self._serialise, _translate_errors(f"dropping failed build {name}"):
                self._client.delete_collection(name)
            raise
        self._shapes[key] = (dimension, distance)
        return self.collection_info(key)

    def drop_old_versions(self, key: str) -> list[int]:
        self._check_open()
        live = self._live_collection(key)
        if live is None:
            return []
        live_version = self._version_of(key, live)
        dropped = []
        # Only older versions: newer ones may be builds in progress elsewhere.
        for version in self._versions(key):
            if version < live_version:
                with self._serialise, _translate_errors(f"dropping version {version} of {key}"):
                    self._client.delete_collection(self._version_name(key, version))
                dropped.append(version)
        return dropped

    # -- QueryEngine: reads -----------------------------------------------------------

    def search(
        self,
        key: str,
        queries: np.ndarray,
        k: int = 10,
        filter: SearchFilter | None = None,
        *,
        hnsw_ef: int | None = None,
    ) -> list[list[Neighbour]]:
        self._check_open()
        check_k(k)
        dimension, distance = self._shape(key)
        points = self._graph_size(key) if hnsw_ef is None else 0
        ef = search_ef(self._config.hnsw_ef_search, hnsw_ef, k, points)
        matrix = as_matrix(queries, dimension, what="query vectors")
        qdrant_filter = _qdrant_filter(filter)
        params = (
            None  # local mode is exact and warns that search params do nothing
            if self._local_mode
            else models.SearchParams(hnsw_ef=ef)
        )
        requests = [
            models.QueryRequest(
                query=row, filter=qdrant_filter, limit=k, with_payload=True, params=params
            )
            for row in matrix.tolist()
        ]
        with self._serialise, _translate_errors(f"searching {key}"):
            responses = self._client.query_batch_points(self._alias(key), requests=requests)
        return [
            [
                neighbour_from_payload(hit.payload or {}, score_to_distance(distance, hit.score))
                for hit in response.points
            ]
            for response in responses
        ]

    def get_vector(self, key: str, ref: RecordRef) -> np.ndarray:
        self._check_open()
        dataset, record_id = ref
        with self._serialise, _translate_errors(f"reading a vector from {key}"):
            found = self._client.retrieve(
                self._alias(key),
                [point_id(dataset, record_id)],
                with_payload=False,
                with_vectors=True,
            )
        if not found or found[0].vector is None:
            raise NotFound(f"record {record_id!r} of dataset {dataset!r} is not in index {key}")
        return stored_vector(self._shape(key)[1], found[0].vector)  # type: ignore[arg-type]

    def count(self, key: str, filter: SearchFilter | None = None) -> int:
        self._check_open()
        with self._serialise, _translate_errors(f"counting {key}"):
            return self._client.count(
                self._alias(key), count_filter=_qdrant_filter(filter), exact=True
            ).count

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._serialise, _translate_errors("closing the Qdrant client"):
            self._client.close()


def _make_client(config: IndexConfig) -> QdrantClient:
    """The qdrant-client ``config`` names; no network until the first call."""
    if config.url == ":memory:":
        return QdrantClient(location=":memory:")
    if config.url is None:
        return QdrantClient(path=str(config.path))
    # qdrant-client's own check (within one minor version) is off: ours reads the version
    # on first use, refuses below MIN_SERVER_VERSION and warns past the tested maximum.
    return QdrantClient(
        url=config.url,
        api_key=config.api_key,
        timeout=max(1, round(config.timeout_s)),
        check_compatibility=False,
    )


def parse_server_version(reported: str | None) -> ServerVersion | None:
    """``"1.12.4"`` (or ``"v1.19.0-dev"``) as ``(1, 12, 4)``; ``None`` when unreadable."""
    match = _VERSION_PATTERN.match((reported or "").strip())
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def check_server_version(reported: str | None) -> ServerVersion:
    """The parsed version; ``UnsupportedVersion`` below the minimum, a warning past the
    tested maximum."""
    version = parse_server_version(reported)
    supported = (
        f"{_dotted(MIN_SERVER_VERSION)} or newer (tested up to "
        f"{_dotted(TESTED_MAX_SERVER_VERSION)}.x)"
    )
    if version is None:
        raise UnsupportedVersion(
            f"the Qdrant server reports version {reported!r}, which is not a version "
            f"number; Chroma needs Qdrant {supported}"
        )
    if version < MIN_SERVER_VERSION:
        raise UnsupportedVersion(
            f"the Qdrant server runs {_dotted(version)}; Chroma needs Qdrant {supported}. "
            "Deploy a newer Qdrant image"
        )
    if version[:2] > TESTED_MAX_SERVER_VERSION:
        log.warning(
            "the Qdrant server runs %s, newer than the newest version Chroma was tested "
            "with (%s.x); continuing",
            _dotted(version),
            _dotted(TESTED_MAX_SERVER_VERSION),
        )
    return version


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def _payload_schemas(graph: bool, per_field: bool) -> list[tuple[str, Any]]:
    """Payload index per filtered field: with ``enable_hnsw`` where the server takes it,
    else the plain type (``_create_version`` then sets ``payload_m`` instead)."""
    keyword: Any = models.PayloadSchemaType.KEYWORD
    number: Any = models.PayloadSchemaType.FLOAT
    if per_field:
        keyword = models.KeywordIndexParams(
            type=models.KeywordIndexType.KEYWORD, enable_hnsw=graph
        )
        number = models.FloatIndexParams(type=models.FloatIndexType.FLOAT, enable_hnsw=graph)
    return [(name, keyword) for name in _KEYWORD_FIELDS] + [("logged_at", number)]


def _qdrant_filter(search_filter: SearchFilter | None) -> models.Filter | None:
    """``SearchFilter`` as a qdrant-client filter (``None`` when it selects everything)."""
    if search_filter is None or search_filter.is_empty():
        return None
    must: list[models.Condition] = []
    for field_name, values in (
        ("dataset", search_filter.datasets),
        ("inference_class", search_filter.inference_classes),
        ("label_class", search_filter.label_classes),
        ("tags", search_filter.tags_any),
    ):
        if values:
            must.append(
                models.FieldCondition(key=field_name, match=models.MatchAny(any=list(values)))
            )
    if search_filter.split is not None:
        must.append(
            models.FieldCondition(key="split", match=models.MatchValue(value=search_filter.split))
        )
    if search_filter.logged_from is not None or search_filter.logged_until is not None:
        must.append(
            models.FieldCondition(
                key="logged_at",
                range=models.Range(gte=search_filter.logged_from, lt=search_filter.logged_until),
            )
        )
    must_not: list[models.Condition] = []
    if search_filter.exclude:
        excluded: list[models.ExtendedPointId] = [
            point_id(dataset, record_id) for dataset, record_id in search_filter.exclude
        ]
        must_not.append(models.HasIdCondition(has_id=excluded))
    return models.Filter(must=must or None, must_not=must_not or None)
