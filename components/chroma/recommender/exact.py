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

from dataclasses import dataclass
from typing import Any

import numpy as np

from chroma.catalog import Changes
from chroma.index import Neighbour
from chroma.storage import FileStore, read_columns

__all__ = ["TrainingNeighbours"]

_CHUNK_ELEMENTS = 16_000_000
"""Query rows x training rows per distance block (64 MB of float32)."""


@dataclass
class TrainingNeighbours:
    """A :class:`~chroma.recommender.neighbours.NeighbourSource` over training vectors."""

    vectors: np.ndarray
    """(n, d) float32; L2-normalised for ``cosine``."""
    refs: list[tuple[str, str]]
    labels: list[str | None]
    predicted: list[str | None]
    distance: str

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
        matrix = np.asarray(queries, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[np.newaxis, :]
        k = min(k, len(self))
        if k == 0:
            return [[] for _ in matrix]
        if self.distance == "cosine":
            matrix = _unit_rows(matrix)
        squared = (self.vectors * self.vectors).sum(axis=1) if self.distance == "euclid" else None
        step = max(1, _CHUNK_ELEMENTS // max(len(self), 1))
        found: list[list[Neighbour]] = []
        for start in range(0, len(matrix), step):
            block = self._distances(matrix[start:start + step], squared)
            nearest = np.argpartition(block, k - 1, axis=1)[:, :k]
            near = np.take_along_axis(block, nearest, axis=1)
            order = np.argsort(near, axis=1, kind="stable")
            for row_ids, row_distances in zip(np.take_along_axis(nearest, order, axis=1),
                                              np.take_along_axis(near, order, axis=1),
                                              strict=True):
                found.append([self._neighbour(int(i), float(d))
                              for i, d in zip(row_ids, row_distances, strict=True)])
        return found

    def _distances(self, queries: np.ndarray, squared: np.ndarray | None) -> np.ndarray:
        """Distances as the index reports them (see ``chroma.index.base``)."""
        products = queries @ self.vectors.T
        if self.distance == "cosine":
            return np.maximum(1.0 - products, 0.0)
        if self.distance == "dot":
            return -products
        assert squared is not None
        query_squared = (queries * queries).sum(axis=1)[:, np.newaxis]
        return np.sqrt(np.maximum(query_squared + squared[np.newaxis, :] - 2 * products, 0.0))

    def _neighbour(self, row: int, distance: float) -> Neighbour:
        dataset, record_id = self.refs[row]
        return Neighbour(record_id=record_id, dataset=dataset, split="training",
                         distance=distance, input_uri=None,
                         payload={"label_class": self.labels[row],
                                  "inference_class": self.predicted[row]})


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)

