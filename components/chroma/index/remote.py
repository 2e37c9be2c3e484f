"""Cluster backend: a Qdrant server through ``qdrant-client``.

Each embedding set is an alias ``<prefix><key>`` pointing at one versioned collection
``<prefix><key>__v000001``, ``__v000002``, ... Searches and writes go through the alias,
so a full re-index builds the next collection, waits until the server has indexed it
(status green) and then moves the alias in one ``update_collection_aliases`` request:
the server applies the delete+create pair atomically, and searches never see a partial
collection. Old collections stay until ``drop_old_versions``.

``url=":memory:"`` or a ``path`` without ``url`` selects qdrant-client's *local mode*, the
test stand-in for a server (brute force; fine below ~20k points). It is not thread-safe,
so calls are serialised with a lock in that mode only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import httpx
import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from chroma.errors import ChromaError, Conflict, InvalidInput, NotFound, Unavailable
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
    stored_vector,
)
from chroma.index.config import IndexConfig
from chroma.keys import point_id

__all__ = ["RemoteQueryEngine"]

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
        raise Unavailable(f"{action}: Qdrant answered {exc.status_code}: {detail}") from exc
    except (ResponseHandlingException, httpx.HTTPError, ConnectionError, TimeoutError) as exc:
        raise Unavailable(f"{action}: Qdrant is unreachable: {exc}") from exc
    except ValueError as exc:  # local mode reports missing collections and bad input so
        if "not found" in str(exc).lower():
            raise NotFound(f"{action}: {exc}") from exc
        raise InvalidInput(f"{action}: {exc}") from exc
    except RuntimeError as exc:  # local mode after close, grpc failures
        raise Unavailable(f"{action}: {exc}") from exc


class RemoteQueryEngine(QueryEngine):
    """``QueryEngine`` over a Qdrant server (or qdrant-client local mode in tests)."""

    def __init__(self, config: IndexConfig) -> None:
        self._config = config
        self._local_mode = config.url is None or config.url == ":memory:"
        if config.url == ":memory:":
            client = QdrantClient(location=":memory:")
        elif config.url is None:
            client = QdrantClient(path=str(config.path))
        else:
            # No start-up version probe: an unreachable server surfaces per call as
            # Unavailable, so the API can start and report not-ready instead of crashing.
            client = QdrantClient(
                url=config.url,
                api_key=config.api_key,
                timeout=max(1, round(config.timeout_s)),
                check_compatibility=False,
            )
        self._client = client
        self._serialise: AbstractContextManager[Any] = (
            threading.RLock() if self._local_mode else nullcontext()
        )
        # Shape of each key's live collection, so a search needs no metadata round trip.
        self._shapes: dict[str, tuple[int, Distance]] = {}
        self._closed = False

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

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the query engine is closed")

    # -- shape cache ------------------------------------------------------------------

    def _shape(self, key: str) -> tuple[int, Distance]:
        shape = self._shapes.get(key)
        if shape is None:
            info = self.collection_info(key)
            shape = (info.dimension, info.distance)
        return shape

    # -- building a version -----------------------------------------------------------

    def _create_version(self, key: str, version: int, dimension: int, distance: Distance) -> str:
        name = self._version_name(key, version)
        config = self._config
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
                ),
            )
            if self._local_mode:
                return name  # local mode scans exactly and warns that indexes do nothing
            graph = config.filter_graph  # see IndexConfig.filter_graph
            for field_name in _KEYWORD_FIELDS:
                self._client.create_payload_index(
                    name,
                    field_name,
                    models.KeywordIndexParams(
                        type=models.KeywordIndexType.KEYWORD, enable_hnsw=graph
                    ),
                    wait=True,
                )
            self._client.create_payload_index(
                name,
                "logged_at",
                models.FloatIndexParams(type=models.FloatIndexType.FLOAT, enable_hnsw=graph),
                wait=True,
            )
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
        """Block until the server reports the collection green (optimizers done)."""
        deadline = time.monotonic() + self._config.timeout_s * 120
        while True:
            with self._serialise, _translate_errors(f"reading collection {collection}"):
                status = self._client.get_collection(collection).status
            if status == models.CollectionStatus.GREEN:
                return
            if status == models.CollectionStatus.RED:
                raise Unavailable(f"Qdrant reports collection {collection} as failed (red)")
            if time.monotonic() > deadline:
                raise Unavailable(f"collection {collection} still {status.value} after waiting")
            time.sleep(_GREEN_POLL_S)

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
            version = max(self._versions(key), default=0) + 1
            name = self._create_version(key, version, dimension, distance)
            try:
                self._point_alias_at(key, name, None)
            except ChromaError:
                # Another process won the race and created the alias: use theirs.
                with self._serialise, _translate_errors(f"dropping {name}"):
                    self._client.delete_collection(name)
                if self._live_collection(key) is None:
                    raise
        info = self.collection_info(key)
        if (info.dimension, info.distance) != (dimension, distance):
            raise Conflict(
                f"index {key} exists with dimension {info.dimension} and {info.distance} "
                f"distance, not {dimension} and {distance}"
            )
        return info

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

    # -- QueryEngine: writes ----------------------------------------------------------

    def upsert(self, key: str, records: Sequence[IndexedRecord], vectors: np.ndarray) -> int:
        self._check_open()
        dimension, _ = self._shape(key)
        return self._write_points(self._alias(key), dimension, records, vectors)

    def delete(self, key: str, refs: Iterable[RecordRef]) -> None:
        self._check_open()
        ids: list[models.ExtendedPointId] = [point_id(ds, rid) for ds, rid in refs]
        if not ids:
            return
        with self._serialise, _translate_errors(f"deleting from {key}"):
            self._client.delete(
                collection_name=self._alias(key),
                points_selector=models.PointIdsList(points=ids),
                wait=True,
            )

    def set_payload(self, key: str, refs: Iterable[RecordRef], fields: Mapping[str, Any]) -> None:
        self._check_open()
        payload = check_mutable_fields(fields)
        ids = [point_id(dataset, record_id) for dataset, record_id in refs]
        if not ids or not payload:
            return
        alias = self._alias(key)
        with self._serialise, _translate_errors(f"setting payload in {key}"):
            # Only points that exist: set_payload must never create a payload-only point.
            present = [r.id for r in self._client.retrieve(alias, ids, with_payload=False)]
            if present:
                self._client.set_payload(alias, payload=payload, points=present, wait=True)

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
    ) -> CollectionInfo:
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
    ) -> list[list[Neighbour]]:
        self._check_open()
        check_k(k)
        dimension, distance = self._shape(key)
        matrix = as_matrix(queries, dimension, what="query vectors")
        qdrant_filter = _qdrant_filter(filter)
        params = (
            None  # local mode is exact and warns that search params do nothing
            if self._local_mode
            else models.SearchParams(hnsw_ef=max(self._config.hnsw_ef_search, k))
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
