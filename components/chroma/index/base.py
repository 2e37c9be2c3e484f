"""The query-engine interface and the plain data it speaks.

``QueryEngine`` lists every operation the indexer and the query API need; ``edge.py`` and
``remote.py`` implement it over Qdrant Edge and a Qdrant server, and behave the same
(``tests/integration/test_index_congruence.py`` runs one suite over both).

One *collection* per embedding set, named by its ``embedding_set_key``. A point's id is
``chroma.keys.point_id(dataset, record_id)``, so re-indexing the same record overwrites it.

Distances are reported the same way on both backends, smaller is nearer:

* ``cosine``: ``1 - cos(q, x)``, in [0, 2];
* ``dot``: ``-<q, x>`` (the negated inner product, so that it still sorts ascending);
* ``euclid``: ``||q - x||``, the Euclidean (not squared) distance.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np

from chroma.errors import InvalidInput

__all__ = [
    "MAX_HNSW_EF",
    "MAX_K",
    "MUTABLE_FIELDS",
    "CollectionInfo",
    "Distance",
    "IndexedRecord",
    "Neighbour",
    "QueryEngine",
    "RecordRef",
    "SearchFilter",
    "Split",
    "StoredHit",
    "neighbour_from_payload",
]

Distance = Literal["cosine", "dot", "euclid"]
Split = Literal["training", "production"]
RecordRef = tuple[str, str]
"""``(dataset, record_id)``: how the rest of Chroma names a record."""

MAX_K = 1_000
"""Largest ``k`` a search accepts; more is a scan, not a neighbour query."""

MAX_HNSW_EF = 1_024
"""Largest ``hnsw_ef`` a search may ask for (``IndexConfig.hnsw_ef_search`` is the
default): beyond it a search costs more than a scan of a mid-sized set."""

MUTABLE_FIELDS = frozenset({"tags", "label_class", "inference_class", "input_uri"})
"""Payload fields ``set_payload`` may change; the rest identify the record."""

_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DISTANCES: tuple[Distance, ...] = ("cosine", "dot", "euclid")


@dataclass(frozen=True, slots=True)
class IndexedRecord:
    """The payload of one point: what a filter can select and a neighbour reports."""

    dataset: str
    record_id: str
    split: Split
    input_uri: str | None = None
    inference_class: str | None = None
    label_class: str | None = None
    tags: tuple[str, ...] = ()
    logged_at: float = 0.0
    """Seconds since the epoch (UTC)."""
    file_path: str | None = field(default=None, compare=False)
    """Where the store holds this record's vector (with ``row_index``), when the writer
    knows: files are never rewritten, so the two name the vector exactly. Not payload;
    lets an index run see a fresh point is current without reading its vector."""
    row_index: int = field(default=-1, compare=False)

    def payload(self) -> dict[str, Any]:
        """The full payload, as ``Neighbour.payload`` reports it; keys are filter fields."""
        return {
            "dataset": self.dataset,
            "record_id": self.record_id,
            "split": self.split,
            "input_uri": self.input_uri,
            "inference_class": self.inference_class,
            "label_class": self.label_class,
            "tags": list(self.tags),
            "logged_at": float(self.logged_at),
        }

    def stored_payload(self) -> dict[str, Any]:
        """``payload()`` without ``None`` values and empty tags, which is what is stored.

        Qdrant Edge converts a payload at ~4 us per key (GIL held), so absent optional
        fields are left out; a filter never matches them either way, and
        ``neighbour_from_payload`` puts them back.
        """
        return {
            name: value
            for name, value in self.payload().items()
            if value is not None and value != []
        }


_PAYLOAD_DEFAULTS: dict[str, Any] = {
    "input_uri": None,
    "inference_class": None,
    "label_class": None,
    "tags": [],
}


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Which points a search or count may return. Empty fields do not constrain.

    Fields combine with AND; the values inside one tuple combine with OR.
    """

    datasets: tuple[str, ...] = ()
    split: Split | None = None
    inference_classes: tuple[str, ...] = ()
    label_classes: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    logged_from: float | None = None
    """Inclusive lower bound on ``logged_at`` (epoch seconds)."""
    logged_until: float | None = None
    """Exclusive upper bound on ``logged_at`` (epoch seconds)."""
    exclude: tuple[RecordRef, ...] = ()
    """Records never returned, e.g. the query record itself in a query-by-record."""

    def is_empty(self) -> bool:
        return self == _NO_FILTER


_NO_FILTER = SearchFilter()


@dataclass(slots=True)  # not frozen: a frozen init cost 6x as much, 10 per query vector
class Neighbour:
    """One search hit (treat as read-only)."""

    record_id: str
    dataset: str
    split: str
    distance: float
    """Smaller is nearer; see the module docstring for each metric."""
    input_uri: str | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """What ``/status`` shows about one embedding set's index."""

    key: str
    version: int
    """Increments with every full re-index; the first build is version 1."""
    dimension: int
    distance: Distance
    points: int
    indexed_points: int
    """Points covered by the HNSW graph, or needing none (Edge: a shard too small for a
    graph); the others are scanned exactly until ``optimize`` (always 0 in qdrant-client
    local mode, which has no graph)."""


StoredHit = tuple[float, dict[str, Any]]
"""One hit as the engine answers it, before a ``Neighbour`` is made of it: its distance
and its payload as stored (optional fields may be absent; ``neighbour_from_payload``
puts them back). The index host sends hits in this shape: a ``Neighbour`` per hit on
both sides of the socket, each carrying its fields twice, cost more than the search of
a batch's payloads."""


class QueryEngine(ABC):
    """A vector index of embedding sets: one collection per ``embedding_set_key``.

    Thread-safe: one engine may serve concurrent searches while the indexer writes or
    re-indexes. Every method raises only ``chroma.errors`` types: ``InvalidInput`` for a
    bad argument, ``NotFound`` for a missing collection or record, ``Conflict`` when a
    collection exists with another dimension or metric, ``Unavailable`` when the backing
    engine fails.
    """

    # -- collections ------------------------------------------------------------------

    @abstractmethod
    def ensure_collection(
        self, key: str, dimension: int, distance: Distance = "cosine"
    ) -> CollectionInfo:
        """Create the collection if missing (idempotent); ``Conflict`` if it differs."""

    @abstractmethod
    def collection_info(self, key: str) -> CollectionInfo:
        """Version, shape and point count of the live collection."""

    @abstractmethod
    def drop_collection(self, key: str) -> None:
        """Remove every version of the collection (no-op when missing)."""

    # -- writes ----------------------------------------------------------------------

    @abstractmethod
    def upsert(self, key: str, records: Sequence[IndexedRecord], vectors: np.ndarray) -> int:
        """Insert or overwrite points; row ``i`` of ``vectors`` belongs to ``records[i]``.

        Visible to searches when it returns. Returns the number of points written.
        """

    def upsert_changed(
        self, key: str, records: Sequence[IndexedRecord], vectors: np.ndarray
    ) -> int:
        """``upsert``, except that an engine may leave out points it knows hold exactly
        this record and vector already (the live index took them fresh from their
        commit); the index run's catch-up calls it. Returns the number written."""
        return self.upsert(key, records, vectors)

    def not_fresh(self, key: str, records: Sequence[IndexedRecord]) -> list[int]:
        """Positions of ``records`` the live index may not hold exactly (record, file and
        row), judged before their vectors are read: the index run reads vectors for and
        writes only these. An engine that remembers its fresh upserts (Edge) leaves out
        those it holds, using that memory up; by default every position."""
        return list(range(len(records)))

    @abstractmethod
    def delete(self, key: str, refs: Iterable[RecordRef]) -> None:
        """Remove points; absent ones are ignored. No search returns them afterwards."""

    @abstractmethod
    def set_payload(self, key: str, refs: Iterable[RecordRef], fields: Mapping[str, Any]) -> None:
        """Overwrite some of ``MUTABLE_FIELDS`` (e.g. ``tags``) on existing points."""

    @abstractmethod
    def optimize(self, key: str) -> None:
        """Build the HNSW graph over points written since the last call (blocking).

        Unindexed points are scanned exactly until then, so results are complete either
        way. Edge: built by a child process on a copy of the live version, which keeps
        serving and taking writes, then switched to (a new version, as after ``reindex``;
        the previous one stays until ``drop_old_versions``). Remote:
        waits until the server's own optimizers are done (collection status green),
        triggering them when the server left them pending (grey, after a restart), for at
        most ``IndexConfig.optimize_timeout_s``; then ``Unavailable``.
        """

    @abstractmethod
    def reindex(
        self,
        key: str,
        dimension: int,
        distance: Distance,
        batches: Iterable[tuple[Sequence[IndexedRecord], np.ndarray]],
        *,
        graph: bool = True,
    ) -> CollectionInfo:
        """Build a new version from ``batches``, index it fully, then switch to it atomically.

        ``graph=False``: switch as soon as the points are written, searched by exact scan
        until a later build or ``optimize`` (a backend whose server builds the graph by
        itself ignores it). Edge: when the key has a live version, what the build has
        read is searched too (exact scan) before the switch: a new set's bulk fill.

        Searches running meanwhile use the previous version; none fails and none sees a
        partial build. The previous version stays on disk until ``drop_old_versions``.
        Writes made to the previous version while the build runs are not carried over:
        the indexer re-applies them afterwards (point ids are deterministic, so that is
        harmless). Returns the new live version.
        """

    @abstractmethod
    def drop_old_versions(self, key: str) -> list[int]:
        """Delete versions older than the live one; returns the versions removed."""

    # -- reads -----------------------------------------------------------------------

    @abstractmethod
    def search(
        self,
        key: str,
        queries: np.ndarray,
        k: int = 10,
        filter: SearchFilter | None = None,
        *,
        hnsw_ef: int | None = None,
    ) -> list[list[Neighbour]]:
        """The ``k`` nearest points to each query row (1-D means one query), nearest first.

        ``hnsw_ef``: this search's HNSW candidate list instead of the configured
        ``hnsw_ef_search`` (lower is faster at a lower recall; ``bench/query.py
        --ef-sweep``); at least ``k`` is used, at most ``MAX_HNSW_EF`` accepted."""

    def search_stored(
        self,
        key: str,
        queries: np.ndarray,
        k: int = 10,
        filter: SearchFilter | None = None,
        *,
        hnsw_ef: int | None = None,
    ) -> list[list[StoredHit]]:
        """``search`` as ``(distance, payload)`` pairs (an engine may answer these without
        making a ``Neighbour`` of each hit)."""
        rows = self.search(key, queries, k, filter, hnsw_ef=hnsw_ef)
        return [[(n.distance, n.payload) for n in row] for row in rows]

    @abstractmethod
    def get_vector(self, key: str, ref: RecordRef) -> np.ndarray:
        """The stored vector of one record (float32; L2-normalised for cosine)."""

    @abstractmethod
    def count(self, key: str, filter: SearchFilter | None = None) -> int:
        """Exact number of points matching ``filter``."""

    # -- lifecycle -------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release files, locks and connections. The engine is unusable afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# -- helpers shared by the backends --------------------------------------------------


def check_key(key: str) -> str:
    """A collection key must be safe as a directory and a Qdrant collection name."""
    if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
        raise InvalidInput(f"embedding set key must match [A-Za-z0-9_-]{{1,64}}, not {key!r}")
    return key


def check_distance(distance: str) -> Distance:
    if distance not in _DISTANCES:
        raise InvalidInput(f"distance must be one of {', '.join(_DISTANCES)}, not {distance!r}")
    return distance  # type: ignore[return-value]


def check_dimension(dimension: int) -> int:
    if not isinstance(dimension, int) or not 1 <= dimension <= 65_536:
        raise InvalidInput(f"dimension must be an integer in 1..65536, not {dimension!r}")
    return dimension


def check_k(k: int) -> int:
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidInput(f"k must be an integer in 1..{MAX_K}, not {k!r}")
    return k


EF_REFERENCE_POINTS = 100_000
"""The graph size the configured ``hnsw_ef_search`` is chosen for (recall@10 0.998 at 128)."""
EF_GROWTH = 0.3
"""How the default ``hnsw_ef`` grows past ``EF_REFERENCE_POINTS``: ``x (points / 100k) **
0.3``, i.e. 2x at 1M. A graph 10x larger needs a longer candidate list for the same recall:
on bench/peers.py's 128-d set at 1M, recall@10 was 0.910 at ef 128, 0.946 at 192, 0.961 at
256 and 0.971 at 384 (``bench/query.py --sizes 1000000 --data peers --ef-sweep``), so a
fixed 128 missed the issue's 0.95 there, at no gain below 100k."""


def search_ef(configured: int, asked: int | None, k: int, points: int = 0) -> int:
    """The ``hnsw_ef`` of one search: ``asked`` (checked) or the ``configured`` default
    grown with the graph's ``points`` (:func:`scaled_ef`); at least ``k``."""
    if asked is not None and (not isinstance(asked, int) or not 1 <= asked <= MAX_HNSW_EF):
        raise InvalidInput(f"hnsw_ef must be an integer in 1..{MAX_HNSW_EF}, not {asked!r}")
    return max(scaled_ef(configured, points) if asked is None else asked, k)


def scaled_ef(configured: int, points: int) -> int:
    """The default ``hnsw_ef`` for a graph of ``points``: see :data:`EF_GROWTH`."""
    if points <= EF_REFERENCE_POINTS:
        return configured
    grown = math.ceil(configured * (points / EF_REFERENCE_POINTS) ** EF_GROWTH)
    return min(grown, MAX_HNSW_EF)


def as_matrix(vectors: np.ndarray, dimension: int, *, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a C-contiguous float32 matrix of width ``dimension``, finite values only.

    A 1-D array is one row.
    """
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[np.newaxis, :]
    if matrix.ndim != 2:
        raise InvalidInput(f"{what} must be a 1-D or 2-D array, got {matrix.ndim} dimensions")
    if matrix.shape[1] != dimension:
        raise InvalidInput(
            f"{what} have dimension {matrix.shape[1]}, the collection has dimension {dimension}"
        )
    if not np.isfinite(matrix).all():
        raise InvalidInput(f"{what} contain NaN or infinite values")
    return np.ascontiguousarray(matrix)


def check_records(records: Sequence[IndexedRecord], vectors: np.ndarray) -> None:
    if len(records) != vectors.shape[0]:
        raise InvalidInput(f"{len(records)} records but {vectors.shape[0]} vectors")
    for record in records:
        if not record.dataset or not record.record_id:
            raise InvalidInput("every indexed record needs a dataset and a record_id")
        if not math.isfinite(record.logged_at):
            raise InvalidInput(f"logged_at of {record.record_id!r} is not finite")


def check_mutable_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - MUTABLE_FIELDS
    if unknown:
        settable = ", ".join(sorted(MUTABLE_FIELDS))
        raise InvalidInput(f"cannot set {', '.join(sorted(unknown))}; settable: {settable}")
    payload = dict(fields)
    if "tags" in payload:
        tags = payload["tags"]
        if isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags):
            raise InvalidInput("tags must be a list of strings")
        payload["tags"] = list(tags)
    return payload


def score_to_distance(distance: Distance, score: float) -> float:
    """Turn a Qdrant score into the distance this module documents."""
    if distance == "cosine":
        return max(0.0, 1.0 - score)  # float rounding can push a self-match below zero
    if distance == "dot":
        return -score
    return abs(score)  # Qdrant reports the Euclidean distance itself for Euclid


def stored_vector(distance: Distance, values: Sequence[float]) -> np.ndarray:
    """A retrieved vector as float32; cosine vectors L2-normalised, as Qdrant compares them."""
    vector = np.asarray(values, dtype=np.float32)
    if distance == "cosine":
        norm = float(np.linalg.norm(vector))
        if norm > 0.0:
            vector = vector / norm
    return vector


def neighbour_from_payload(stored: Mapping[str, Any], distance: float) -> Neighbour:
    payload = {**_PAYLOAD_DEFAULTS, **stored}
    return Neighbour(
        record_id=payload["record_id"],
        dataset=payload["dataset"],
        split=payload["split"],
        distance=distance,
        input_uri=payload["input_uri"],
        payload=payload,
    )
