"""The nearest live records: index hits, checked against the catalog while a delete or a
tag change may not be in the index yet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chroma.catalog import Catalog, StoredRecord
from chroma.errors import InvalidInput, NotFound, Unavailable
from chroma.index import Neighbour, SearchFilter, StoredHit, neighbour_from_payload
from chroma.index.hosting import QueryReader, search_checked
from chroma.storage import FileStore, read_embeddings

__all__ = [
    "OVERFETCH", "Found", "Hit", "IndexNotBuilt", "check_queries", "find", "live_hits",
    "record_vector", "search_live",
]

OVERFETCH = 16
"""Extra hits asked of the index per query when the hits are checked against the catalog,
to make up for records deleted since the last index operation."""


class IndexNotBuilt(Unavailable):
    """The set has records but its index was never built (an ``index`` run will)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One answered neighbour: as the catalog has it now (``record``), or, when the index
    is known to hold no deleted or changed record of the set, as the index has it
    (``neighbour``, no catalog round trip)."""

    distance: float
    record: StoredRecord | None = None
    neighbour: Neighbour | None = None


def check_queries(vectors: Sequence[Sequence[float]], dimension: int, key: str) -> np.ndarray:
    """The query vectors as a float32 matrix; ``InvalidInput`` naming what is wrong."""
    for i, vector in enumerate(vectors):
        if len(vector) != dimension:
            which = "query embedding" if len(vectors) == 1 else f"query embedding {i}"
            raise InvalidInput(
                f"{which} has dimension {len(vector)} but embedding set {key} has "
                f"dimension {dimension}")
    matrix = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(matrix).all():
        raise InvalidInput("query embeddings contain NaN or infinite values")
    return matrix


def record_vector(
    catalog: Catalog, store: FileStore, key: str, dataset: str, record_id: str
) -> np.ndarray:
    """The stored vector of one live record of ``key``, as a (1, d) matrix."""
    if catalog.get_dataset(dataset).embedding_set_key != key:
        raise InvalidInput(f"dataset {dataset!r} is not in embedding set {key}")
    record = catalog.live.lookup([(dataset, record_id)]).get((dataset, record_id))
    if record is None:
        raise NotFound(f"no record {record_id!r} in dataset {dataset!r}")
    return read_embeddings(store, [(record.file_path, record.row_index)])


def search_live(
    catalog: Catalog, reader: QueryReader, key: str, queries: np.ndarray, k: int,
    search_filter: SearchFilter,
) -> list[list[Hit]]:
    """The ``k`` nearest live records of each query row, nearest first.

    The catalog is asked only when the index host says a delete or a tag change of the
    set may not be applied yet (``chroma.index.hosting.guard``; always with the remote
    backend). ``IndexNotBuilt`` when the set's index does not exist yet."""
    return live_hits(catalog, find(reader, key, queries, k, search_filter), k)


@dataclass(frozen=True, slots=True)
class Found:
    """What the index answered: up to ``k`` (+ ``OVERFETCH`` when ``verify``) per query,
    as ``(distance, stored payload)`` pairs (``chroma.index.StoredHit``)."""

    rows: list[list[StoredHit]]
    verify: bool
    """The hits must be checked against the catalog (a delete or tag change in flight)."""


def find(
    reader: QueryReader, key: str, queries: np.ndarray, k: int, search_filter: SearchFilter,
    *, wait: bool = True, hnsw_ef: int | None = None,
) -> Found:
    """The index's hits (``wait=False``: see ``HostedReader.search_checked``; ``hnsw_ef``:
    the search's candidate list, default the index's ``hnsw_ef_search``)."""
    try:
        rows, verify = search_checked(reader, key, queries, k, search_filter, OVERFETCH,
                                      wait=wait, hnsw_ef=hnsw_ef)
    except NotFound as exc:  # records exist but the index was never built
        raise IndexNotBuilt(
            f"the index of embedding set {key} is not built yet; an index operation is "
            "queued, retry shortly") from exc
    return Found(rows, verify)


def live_hits(catalog: Catalog, found: Found, k: int) -> list[list[Hit]]:
    """``found`` as answers: straight from the index, or checked against the catalog
    (one round trip) when ``found.verify``."""
    if not found.verify:
        return [[Hit(d, neighbour=neighbour_from_payload(p, d)) for d, p in row[:k]]
                for row in found.rows]
    rows = found.rows
    live = catalog.live.lookup(list({(p["dataset"], p["record_id"]) for row in rows
                                     for _, p in row}))
    results = []
    for row in rows:
        hits = [Hit(d, record=live[ref]) for d, p in row
                if (ref := (p["dataset"], p["record_id"])) in live]  # else deleted since indexed
        results.append(hits[:k])
    return results
