"""Points on their way into a version being written: searched by exact scan meanwhile.

A new set's bulk load is written into a graph-less version by a child process
(``edge.EdgeQueryEngine.reindex(graph=False)``); converting points into Qdrant Edge's
form costs ~45 us of CPU each, so 100k points take seconds of a core (tens of seconds
on a busy machine) before the switch makes them searchable. A :class:`FillScan` keeps
the records and vectors the build has read so far, and searches of the key scan them
exactly beside the live version, so a record is searchable once its page is read from
the store, not once the child has written it. Dropped at the switch.

The scan keeps its records' payloads as Arrow columns, one set per batch, not as
``IndexedRecord`` objects: 100k of those with their strings were ~40 MB of small Python
objects living as long as the fill, and the pymalloc arenas they took stayed with the
worker process after it (fragmented by what was allocated meanwhile; no trim reaches
them). A record is rebuilt from its columns only when a search looks at it.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa

from chroma.index.base import (
    Distance,
    IndexedRecord,
    Neighbour,
    SearchFilter,
    neighbour_from_payload,
    score_to_distance,
)
from chroma.keys import point_id

__all__ = ["FILL_SCAN_MAX", "FillScan", "matches", "merge_hits"]

FILL_SCAN_MAX = 200_000
"""Points a fill scan holds at most (100 MB at 128-d): a larger load's tail is
searchable at the switch; a query's scan stays ~10-20 ms."""


def matches(search_filter: SearchFilter | None, record: IndexedRecord) -> bool:
    """Whether ``record`` passes ``search_filter`` (what Edge's filter selects)."""
    f = search_filter
    if f is None:
        return True
    if f.datasets and record.dataset not in f.datasets:
        return False
    if f.split is not None and record.split != f.split:
        return False
    if f.inference_classes and record.inference_class not in f.inference_classes:
        return False
    if f.label_classes and record.label_class not in f.label_classes:
        return False
    if f.tags_any and not set(f.tags_any) & set(record.tags):
        return False
    if f.logged_from is not None and record.logged_at < f.logged_from:
        return False
    if f.logged_until is not None and record.logged_at >= f.logged_until:
        return False
    return (record.dataset, record.record_id) not in f.exclude


_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("record_id", pa.string()), ("split", pa.string()),
    ("input_uri", pa.string()), ("inference_class", pa.string()),
    ("label_class", pa.string()), ("tags", pa.list_(pa.string())),
    ("logged_at", pa.float64()),
])


def _columns(records: Sequence[IndexedRecord]) -> tuple[pa.Array, ...]:
    """``records``' fields as one Arrow array each, in :data:`_SCHEMA`'s order."""
    return tuple(
        pa.array([getattr(r, f.name) for r in records], type=f.type) for f in _SCHEMA)


class _Rows:
    """The scan's records by position, rebuilt from the batches' columns on demand."""

    def __init__(self, starts: list[int], batches: list[tuple[pa.Array, ...]]) -> None:
        self._starts = starts
        self._batches = batches

    def __getitem__(self, position: int) -> IndexedRecord:
        which = bisect.bisect_right(self._starts, position) - 1
        row = position - self._starts[which]
        values = [column[row].as_py() for column in self._batches[which]]
        values[6] = tuple(values[6] or ())  # tags
        return IndexedRecord(*values)


class FillScan:
    """The points read so far for a version being written (appended, never changed;
    deletes mark them gone)."""

    def __init__(self, dimension: int, distance: Distance, limit: int = FILL_SCAN_MAX) -> None:
        self.distance = distance
        self.limit = limit
        self._lock = threading.Lock()
        self._matrix = np.empty((0, dimension), dtype=np.float32)
        self._size = 0
        self._starts: list[int] = []  # the position of each batch's first record
        self._batches: list[tuple[pa.Array, ...]] = []  # each batch's columns
        self._alive = np.empty(0, dtype=bool)
        self._where: dict[str, int] = {}

    def __len__(self) -> int:
        return self._size

    def add(self, records: Sequence[IndexedRecord], matrix: np.ndarray) -> None:
        """Append a batch (checked already); beyond ``limit`` points nothing more."""
        with self._lock:
            room = self.limit - self._size
            if room <= 0:
                return
            records, matrix = records[:room], np.asarray(matrix[:room], dtype=np.float32)
            if self.distance == "cosine":
                norms = np.linalg.norm(matrix, axis=1, keepdims=True)
                matrix = matrix / np.where(norms == 0, 1, norms)
            end = self._size + len(records)
            if end > len(self._matrix):  # grow by doubling: searches copy nothing
                capacity = max(end, 2 * len(self._matrix), 1024)
                grown = np.empty((capacity, matrix.shape[1]), dtype=np.float32)
                grown[:self._size] = self._matrix[:self._size]
                alive = np.zeros(capacity, dtype=bool)
                alive[:self._size] = self._alive[:self._size]
                self._matrix, self._alive = grown, alive
            self._matrix[self._size:end] = matrix
            self._alive[self._size:end] = True
            for position, record in enumerate(records, start=self._size):
                previous = self._where.get(pid := point_id(record.dataset, record.record_id))
                if previous is not None:  # a record logged again: its latest form counts
                    self._alive[previous] = False
                self._where[pid] = position
            self._starts.append(self._size)
            self._batches.append(_columns(records))
            self._size = end

    def forget(self, ids: Iterable[str]) -> None:
        """Points deleted meanwhile (point ids) are not answered any more."""
        with self._lock:
            for pid in ids:
                position = self._where.pop(pid, None)
                if position is not None:
                    self._alive[position] = False

    def search(self, queries: np.ndarray, k: int,
               search_filter: SearchFilter | None) -> list[list[Neighbour]]:
        """The ``k`` nearest points of each query row that pass ``search_filter``."""
        with self._lock:
            size = self._size
            matrix, alive = self._matrix[:size], self._alive[:size]
            records = _Rows(self._starts[:], self._batches[:])
        if size == 0:
            return [[] for _ in range(len(queries))]
        queries = np.asarray(queries, dtype=np.float32)
        if self.distance == "euclid":
            scores = np.sqrt(np.maximum(
                (queries ** 2).sum(1)[:, None] - 2 * queries @ matrix.T
                + (matrix ** 2).sum(1)[None, :], 0))
            order_sign = 1.0  # smaller is nearer
        else:
            if self.distance == "cosine":
                norms = np.linalg.norm(queries, axis=1, keepdims=True)
                queries = queries / np.where(norms == 0, 1, norms)
            scores = queries @ matrix.T
            order_sign = -1.0
        keyed = np.where(alive[None, :], order_sign * scores, np.inf)
        out = []
        for row, query_keys in enumerate(keyed):
            out.append(self._nearest(query_keys, scores[row], records, k, search_filter))
        return out

    def _nearest(self, keys: np.ndarray, scores: np.ndarray, records: _Rows,
                 k: int, search_filter: SearchFilter | None) -> list[Neighbour]:
        wanted = k if search_filter is None or search_filter.is_empty() else 4 * k + len(
            search_filter.exclude)
        while True:
            take = min(wanted, len(keys))
            candidates = np.argpartition(keys, take - 1)[:take] if take < len(keys) else \
                np.arange(len(keys))
            candidates = candidates[np.argsort(keys[candidates], kind="stable")]
            hits = [int(i) for i in candidates if np.isfinite(keys[i])
                    and matches(search_filter, records[i])][:k]
            if len(hits) == k or take == len(keys):
                return [neighbour_from_payload(records[i].stored_payload(),
                                               score_to_distance(self.distance,
                                                                 float(scores[i])))
                        for i in hits]
            wanted *= 8


def merge_hits(first: list[list[Neighbour]], second: list[list[Neighbour]],
               k: int) -> list[list[Neighbour]]:
    """Per query, the ``k`` nearest of both lists, each record once (its nearer hit)."""
    merged = []
    for a, b in zip(first, second, strict=True):
        best: dict[tuple[str, str], Neighbour] = {}
        for hit in (*a, *b):
            ref = (hit.dataset, hit.record_id)
            if ref not in best or hit.distance < best[ref].distance:
                best[ref] = hit
        merged.append(sorted(best.values(), key=lambda hit: hit.distance)[:k])
    return merged
