"""Exact k nearest rows of a matrix, by matrix product: pure numpy, no I/O.

Against up to ~100k training vectors held as one matrix, exact search is faster than a
filtered HNSW search through the index host (~6,300 queries/s at 20k rows and ~1,060 at
100k on 2 cores, vs ~730 end to end); ``chroma.labelling.training`` uses it below
``Settings.recommend_exact_knn_max`` training records. Distances are reported as the
query engine reports them (``chroma.index.base``): cosine ``1 - cos``, dot ``-q.x``,
Euclid ``|q - x|``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = [
    "ExactNearest", "closeness_to_distance", "one_blas_thread", "query_matrix", "unit_rows",
]

_CHUNK_ELEMENTS = 8_000_000
"""Query rows x stored rows per block of scores (32 MB of float32, one per thread)."""

_THREADS = max(1, min(4, os.cpu_count() or 1))
"""Blocks searched at once, each by one thread: its product with BLAS on that one thread,
then its top k (numpy releases the GIL for both)."""


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread per call while any search in this process runs blocks in
    parallel, or a caller asks for it around its own maths. BLAS's own threads wait for
    each other at every call: on a busy machine (load 15 on 2 cores) that made the
    product of a 10k x 20k search take 2-3 times as long, in wall and CPU time, as
    independent single-threaded blocks (MHB scoring: 3-5 times). Process-wide (BLAS has
    no per-call setting), so counted: the first one in sets it, the last one out
    restores it; nesting is fine."""
    global _blas_users, _blas_limit
    with _blas_lock:
        if _blas_users == 0:
            from threadpoolctl import threadpool_limits

            _blas_limit = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limit is not None:
                _blas_limit.restore_original_limits()
                _blas_limit = None


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit: Any = None


def query_matrix(queries: np.ndarray, distance: str) -> np.ndarray:
    """Query vectors as a float32 (n, d) matrix, rows made unit for cosine (as the stored
    rows are)."""
    matrix = np.asarray(queries, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[np.newaxis, :]
    return unit_rows(matrix) if distance == "cosine" else matrix


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


class ExactNearest:
    """The stored rows nearest to each query row under one of the index's distances."""

    def __init__(self, vectors: np.ndarray, distance: str) -> None:
        matrix = np.asarray(vectors, dtype=np.float32)
        self.vectors = unit_rows(matrix) if distance == "cosine" else matrix
        self.distance = distance
        self._squared_norms = (self.vectors * self.vectors).sum(axis=1)

    def __len__(self) -> int:
        return len(self.vectors)

    def nearest(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row numbers (n, k) of the nearest stored rows, nearest first, and their
        distances."""
        matrix = query_matrix(queries, self.distance)
        k = min(k, len(self))
        rows = np.empty((len(matrix), k), dtype=np.int64)
        distances = np.empty((len(matrix), k), dtype=np.float64)
        if k == 0:
            return rows, distances
        step = max(1, _CHUNK_ELEMENTS // len(self))
        starts = range(0, len(matrix), step)

        def search(start: int) -> None:
            block = matrix[start:start + step]
            top, values = _top_k(self._closeness(block), k)  # larger is nearer
            rows[start:start + len(block)] = top
            distances[start:start + len(block)] = self._to_distance(
                values.astype(np.float64), block)

        if len(starts) <= 1:  # a few queries (an assessment on /log): BLAS as configured
            for start in starts:
                search(start)
            return rows, distances
        with one_blas_thread(), ThreadPoolExecutor(min(_THREADS, len(starts))) as pool:
            for _ in pool.map(search, starts):  # re-raises a block's error
                pass
        return rows, distances

    def _closeness(self, queries: np.ndarray) -> np.ndarray:
        """A score per (query, stored row), larger nearer, computed in place: the
        similarity for cosine and dot, ``2 q.x - |x|^2`` for Euclid (``|q|^2`` is the
        same along a row, so it is added back for the chosen ones only)."""
        products = queries @ self.vectors.T
        if self.distance == "euclid":
            products *= 2.0
            products -= self._squared_norms
        return products

    def _to_distance(self, closeness: np.ndarray, queries: np.ndarray) -> np.ndarray:
        return closeness_to_distance(closeness, queries, self.distance)


def closeness_to_distance(closeness: np.ndarray, queries: np.ndarray,
                          distance: str) -> np.ndarray:
    """The index's distance from the closeness :class:`ExactNearest` ranks by (the
    similarity for cosine and dot, ``2 q.x - |x|^2`` for Euclid), per query row."""
    if distance == "cosine":
        return np.maximum(1.0 - closeness, 0.0)
    if distance == "dot":
        return -closeness
    query_squared = (queries.astype(np.float64) ** 2).sum(axis=1)[:, np.newaxis]
    return np.sqrt(np.maximum(query_squared - closeness, 0.0))


_GROUP = 16
"""Columns per group in :func:`_top_k`'s first pass."""


def _top_k(closeness: np.ndarray, k: int,
           group: int = _GROUP) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the ``k`` largest values of each row, largest first, and the values.

    Exact, in two passes, because a partition over every column was most of an
    incremental refresh: the columns are cut into ``m`` groups of ``_GROUP`` (group ``g``
    = columns ``g, g + m, g + 2m, ...``, so the maximum per group is a few vectorised
    ``maximum`` over contiguous rows); each of the k largest values lies in a group
    whose maximum is among the k largest group maxima (fewer than k groups can hold a
    larger value), so only those ``k * _GROUP`` columns, and the ragged tail, are
    partitioned. Among exactly equal values, which column is reported may differ from a
    full partition's (both are arbitrary there). ``group``: columns per group (the
    inverted file picks its probed lists among ~600 with groups of 8: 4x faster than a
    partition)."""
    rows, n = closeness.shape
    m = n // group
    if m <= 2 * k:
        return _top_k_full(closeness, k)
    grouped = m * group
    maxima = closeness[:, :m].copy()
    for start in range(m, grouped, m):  # views, not a reshaped copy of the block
        np.maximum(maxima, closeness[:, start:start + m], out=maxima)
    groups = np.argpartition(maxima, m - k, axis=1)[:, m - k:]
    columns = (groups[:, :, np.newaxis] + m * np.arange(group)).reshape(rows, k * group)
    if grouped < n:
        tail = np.broadcast_to(np.arange(grouped, n), (rows, n - grouped))
        columns = np.concatenate([columns, tail], axis=1)
    top, values = _top_k_full(np.take_along_axis(closeness, columns, axis=1), k)
    return np.take_along_axis(columns, top, axis=1), values


def _top_k_full(closeness: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_top_k` by one partition over every column."""
    n = closeness.shape[1]
    top = np.argpartition(closeness, n - k, axis=1)[:, n - k:]
    values = np.take_along_axis(closeness, top, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
