"""Exact k nearest *training* records, in memory: the recommender's kNN for small sets.

A ``recommend`` run asks, for every production record, for its k nearest training
records. Through the query engine that is one filtered HNSW search per record in the
index host: about 730 records/s end to end with 20k training records (``bench/
refresh.py``). Against the training vectors held here as one matrix, the same answer
is exact and a matrix product: ~6,300 queries/s at 20k training records and ~1,060 at
100k (2 cores), so the recommender uses this below ``Settings.recommend_exact_knn_max``
training records and the query engine above.

Owns: loading a set's training vectors and the search over them. Must not touch the
index; it answers like ``QueryEngine.search`` (``Neighbour``s, the index's distances).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chroma.catalog import Catalog, Changes, Recommendations
from chroma.index import Neighbour
from chroma.recommender.neighbours import KnnAnswer
from chroma.storage import FileStore, read_columns

__all__ = ["TrainingNeighbours", "exact_training_source"]

_CHUNK_ELEMENTS = 16_000_000
"""Query rows x training rows per block of scores (64 MB of float32)."""


@dataclass
class TrainingNeighbours:
    """A :class:`~chroma.recommender.neighbours.NeighbourSource` over training vectors."""

    vectors: np.ndarray
    """(n, d) float32; L2-normalised for ``cosine``."""
    refs: list[tuple[str, str]]
    labels: list[str | None]
    predicted: list[str | None]
    distance: str

    def __post_init__(self) -> None:
        # The class a neighbour votes for: its label, else what the model predicted.
        self.classes = [label or predicted
                        for label, predicted in zip(self.labels, self.predicted, strict=True)]
        self._squared_norms = (self.vectors * self.vectors).sum(axis=1)

    @classmethod
    def load(
        cls, changes: Changes, store: FileStore, key: str, distance: str
    ) -> TrainingNeighbours:
        rows = [r for page in changes.iter_records_since(key, 0, split="training")
                for r in page]
        columns = read_columns(store, [(r.file_path, r.row_index) for r in rows], ["embedding"])
        vectors = np.asarray(columns["embedding"], dtype=np.float32)
        if distance == "cosine":
            vectors = _unit_rows(vectors)
        return cls(vectors, [(r.dataset, r.record_id) for r in rows],
                   [r.label_class for r in rows], [r.inference_class for r in rows], distance)

    def __len__(self) -> int:
        return len(self.refs)

    def search(
        self, key: str, queries: np.ndarray, k: int = 10, filter: Any = None
    ) -> list[list[Neighbour]]:
        """The ``k`` nearest training records of each query row, nearest first.

        ``filter`` is ignored: every vector here is a training record, which is all the
        recommender ever asks for."""
        rows, distances = self.nearest(queries, k)
        return [[self._neighbour(int(i), float(d)) for i, d in zip(ids, ds, strict=True)]
                for ids, ds in zip(rows, distances, strict=True)]

    def knn_answer(
        self, queries: np.ndarray, k: int, exclude: Sequence[tuple[str, str]] | None = None
    ) -> KnnAnswer:
        """What ``knn_inputs`` makes of :meth:`search`, straight from the arrays (no
        ``Neighbour`` per hit: they were a sixth of a refresh)."""
        rows, found = self.nearest(queries, k + (1 if exclude is not None else 0))
        distances = np.full((len(rows), k), np.nan)
        labels: list[list[str | None]] = []
        refs: list[list[tuple[str, str]]] = []
        for row, (ids, row_distances) in enumerate(zip(rows.tolist(), found.tolist(),
                                                       strict=True)):
            own = exclude[row] if exclude is not None else None
            kept = [(i, d) for i, d in zip(ids, row_distances, strict=True)
                    if self.refs[i] != own][:k]
            distances[row, :len(kept)] = [d for _, d in kept]
            labels.append([self.classes[i] for i, _ in kept])
            refs.append([self.refs[i] for i, _ in kept])
        return KnnAnswer(distances, labels, refs)

    def nearest(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row numbers (n, k) of the nearest training vectors, nearest first, and their
        distances as the index reports them (see ``chroma.index.base``)."""
        matrix = np.asarray(queries, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[np.newaxis, :]
        if self.distance == "cosine":
            matrix = _unit_rows(matrix)
        k = min(k, len(self))
        rows = np.empty((len(matrix), k), dtype=np.int64)
        distances = np.empty((len(matrix), k), dtype=np.float64)
        if k == 0:
            return rows, distances
        step = max(1, _CHUNK_ELEMENTS // len(self))
        for start in range(0, len(matrix), step):
            block = matrix[start:start + step]
            closeness = self._closeness(block)  # larger is nearer
            top = np.argpartition(closeness, len(self) - k, axis=1)[:, len(self) - k:]
            values = np.take_along_axis(closeness, top, axis=1)
            order = np.argsort(-values, axis=1, kind="stable")
            rows[start:start + len(block)] = np.take_along_axis(top, order, axis=1)
            values = np.take_along_axis(values, order, axis=1).astype(np.float64)
            distances[start:start + len(block)] = self._to_distance(values, block)
        return rows, distances

    def _closeness(self, queries: np.ndarray) -> np.ndarray:
        """A score per (query, training row), larger nearer, computed in place: the
        similarity for cosine and dot, ``2 q.x - |x|^2`` for Euclid (``|q|^2`` is the
        same along a row, so it is added back for the chosen ones only)."""
        products = queries @ self.vectors.T
        if self.distance == "euclid":
            products *= 2.0
            products -= self._squared_norms
        return products

    def _to_distance(self, closeness: np.ndarray, queries: np.ndarray) -> np.ndarray:
        if self.distance == "cosine":
            return np.maximum(1.0 - closeness, 0.0)
        if self.distance == "dot":
            return -closeness
        query_squared = (queries.astype(np.float64) ** 2).sum(axis=1)[:, np.newaxis]
        return np.sqrt(np.maximum(query_squared - closeness, 0.0))

    def _neighbour(self, row: int, distance: float) -> Neighbour:
        dataset, record_id = self.refs[row]
        return Neighbour(record_id=record_id, dataset=dataset, split="training",
                         distance=distance, input_uri=None,
                         payload={"label_class": self.labels[row],
                                  "inference_class": self.predicted[row]})


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def exact_training_source(
    catalog: Catalog, queue: Recommendations, changes: Changes, store: FileStore, key: str,
    limit: int,
) -> TrainingNeighbours | None:
    """The in-memory source for ``key`` when it has at most ``limit`` training records
    (``Settings.recommend_exact_knn_max``), else None: use the query engine. The one
    decision, so that a ``recommend`` run and the assessments on ``/log`` agree."""
    training = sum(count for _, count in queue.training_files(key))
    if not 0 < training <= limit:
        return None
    distance = catalog.get_embedding_set(key).distance
    return TrainingNeighbours.load(changes, store, key, distance)
