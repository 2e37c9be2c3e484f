"""Approximate k nearest rows by an inverted file (IVF): pure numpy, no I/O.

Exact kNN of 1M production records against 100k training records is ~25.6 TFLOP, far
beyond a minute on 2 cores. :class:`IvfNearest` answers like
:class:`~chroma.scoring.nearest.ExactNearest` (same metrics, distances and output shape)
but looks only where the neighbours probably are:

* **build**: k-means (a few Lloyd iterations on a sample, seeded: the same vectors always
  give the same index) splits the stored rows into ~``sqrt(n)`` lists by nearest centre;
  the rows are stored list after list, transposed (d x n).
* **search**, one block of queries at a time: each query picks its ``probes`` nearest
  centres; the (query, list) pairs are grouped by list so that every list is one float32
  matrix product against all its queries of the block (lists shared out over a few
  threads, GIL released, BLAS itself held to one thread). First pass: each query's
  nearest list, its k best there set the query's floor; second pass: the other probed
  lists keep only rows at or above the floor; one sort merges them into each query's
  k best, exactly the k best of every row of its probed lists.

Every metric is searched as a Euclidean one in a space where it is one, so k-means and
"nearest centre" mean the right thing: cosine on unit rows (``|q - x|^2 = 2 - 2 cos``);
dot (maximum inner product) after appending ``sqrt(M^2 - |x|^2)`` to every stored row
and 0 to every query (``|q' - x'|^2 = |q|^2 + M^2 - 2 q.x``, the usual reduction); Euclid
as is. Within a list the rows are ranked by the same closeness as the exact path and the
chosen ones get the same distances (``1 - cos``, ``-q.x``, ``|q - x|``). A query whose
probed lists hold fewer than k rows in all is answered exactly, so every row has
``min(k, n)`` neighbours as with the exact search.

Owns: the index structure and its search. Knows nothing of records, the catalog or the
settings (``chroma.labelling.training`` decides when it is used).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import numpy as np

from chroma.scoring.nearest import (
    ExactNearest,
    _top_k,
    closeness_to_distance,
    one_blas_thread,  # one counter for the process: exact and approximate searches overlap
    query_matrix,
    unit_rows,
)

__all__ = ["IvfNearest", "IvfParams", "one_blas_thread"]

_THREADS = max(1, min(4, os.cpu_count() or 1))
"""Threads sharing the lists of a block (BLAS and argpartition release the GIL)."""

_BLOCK_QUERIES = 32_768
"""Queries per block: bounds the candidate arrays (block x probes x k)."""

_PROBE_GROUP = 8
"""Columns per group when picking the probed lists (``nearest._top_k``)."""

_ASSIGN_ELEMENTS = 16_000_000
"""Rows x centres per block of scores when assigning rows to lists (64 MB of float32)."""


@dataclass(frozen=True)
class IvfParams:
    """How the index is built and searched. The defaults gave recall@10 1.000 on clustered
    128-d data of low intrinsic dimension at 100k rows, 0.63 on isotropic Gaussian
    clusters (the worst case; their kNN distances were still 1.02x the exact ones and
    ranked records alike, rank correlation 0.997): ``bench/knn.py``. sqrt(n) lists and 6
    probes instead of 2 sqrt(n) and 8: recall@10 0.63 against 0.53 on the isotropic set
    at 1M x 100k and less search CPU in pages of 5,000 queries (fewer, larger products,
    fewer centres to score), the build faster. On ``bench/quality.py``'s small sets
    (IVF forced) recall went 0.632 -> 0.657, 0.993 -> 0.995, 0.984 -> 0.983 and 0.998
    -> 0.989 (wine: ~120 rows, 11 lists) and the queue's figures stayed within 0.002."""

    lists_per_sqrt: float = 1.0
    """Lists = this x sqrt(n) (at least 1, at most n / 8: lists of a few rows cost more
    Python than they save maths)."""
    probes: int = 6
    """Lists searched per query: recall against time."""
    iterations: int = 8
    """Lloyd iterations of the k-means."""
    sample_per_list: int = 48
    """The k-means runs on this many rows per list (all rows when fewer)."""
    seed: int = 0


class IvfNearest:
    """The stored rows (approximately) nearest to each query row, as ExactNearest."""

    def __init__(self, vectors: np.ndarray, distance: str,
                 params: IvfParams | None = None) -> None:
        self.params = params or IvfParams()
        self.distance = distance
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2:
            matrix = matrix.reshape(len(matrix), -1)
        stored = unit_rows(matrix) if distance == "cosine" else matrix
        space = _search_space(stored, distance)
        centres = _kmeans(space, _list_count(len(stored), self.params), self.params)
        assignment = _assign(space, centres) if len(stored) else np.empty(0, np.int64)
        order = np.argsort(assignment, kind="stable")
        self.rows = order  # stored position -> caller's row number
        # Stored transposed (d x n, a list's rows a block of columns): the product with
        # a list's block was ~2x faster than with the transpose of row-major rows, whose
        # packing cost OpenBLAS as much as the product (bench/knn.py, perf).
        self._columns = np.ascontiguousarray(stored[order].T)
        self.offsets = np.searchsorted(assignment[order], np.arange(len(centres) + 1))
        # Closeness is  scale * q.x - bias  (larger nearer), as ExactNearest's.
        self._scale = 2.0 if distance == "euclid" else 1.0
        self._bias = ((self.vectors * self.vectors).sum(axis=1) if distance == "euclid"
                      else np.zeros(len(self.vectors), np.float32)).astype(np.float32)
        centre_rows = np.asarray(centres[:, :stored.shape[1]], dtype=np.float32)
        # |q' - c'|^2 = |q|^2 - 2 q.c + |c'|^2: in the closeness' scale.
        self._centre_bias = ((centres * centres).sum(axis=1)
                             * (1.0 if distance == "euclid" else 0.5)).astype(np.float32)
        self._radii: np.ndarray | None = None
        if distance == "dot":
            centre_rows, self._radii = _means_and_radii(self.vectors, self.offsets)
        self._centre_columns = np.ascontiguousarray(centre_rows.T)  # as the rows, d x lists

    @property
    def vectors(self) -> np.ndarray:
        """The stored rows in list order (n x d, a view of the columns)."""
        return self._columns.T

    def __len__(self) -> int:
        return self._columns.shape[1]

    @cached_property
    def _exact(self) -> ExactNearest:
        """Exact search over the stored order, for queries whose lists are too short."""
        return ExactNearest(self.vectors, self.distance)

    @property
    def lists(self) -> int:
        return self._centre_columns.shape[1]

    def nearest(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row numbers (n, k) of the nearest stored rows, nearest first, and their
        distances; k = min(k, stored rows)."""
        matrix = query_matrix(queries, self.distance)
        k = min(k, len(self))
        rows = np.empty((len(matrix), k), dtype=np.int64)
        distances = np.empty((len(matrix), k), dtype=np.float64)
        if k == 0 or len(matrix) == 0:
            return rows, distances
        # One BLAS thread per call, our threads side by side: OpenBLAS's own threads on
        # these small products were 25x slower on a busy 2-core machine (bench/knn.py).
        with one_blas_thread(), ThreadPoolExecutor(_THREADS) as pool:
            for start in range(0, len(matrix), _BLOCK_QUERIES):
                block = matrix[start:start + _BLOCK_QUERIES]
                found, values = self._search_block(block, k, pool)
                rows[start:start + len(block)] = found
                distances[start:start + len(block)] = closeness_to_distance(
                    values.astype(np.float64), block, self.distance)
        return rows, distances

    def _search_block(self, block: np.ndarray, k: int,
                      pool: ThreadPoolExecutor) -> tuple[np.ndarray, np.ndarray]:
        """Caller's row numbers and closeness of each query's k best candidates.

        In two passes, because a top k per (query, probed list) was half the search (a
        partition per row of ~150 values costs its fixed overhead 8 times per query):
        first each query's k best in its nearest list, exactly; the k-th of them is a
        floor (the final k-th best is at least as close), so in the other probed lists
        only the candidates at or above the floor are kept, by one comparison over each
        list's products (a few dozen per query, not ~1,000), and one sort merges them."""
        scaled = block * np.float32(self._scale)
        # The probed lists, nearest first, by the two-pass selection (a partition over
        # every list was a quarter of the search).
        probes, _ = _top_k(self._list_scores(scaled), min(self.params.probes, self.lists),
                           group=_PROBE_GROUP)
        count = len(block)
        floor = np.full(count, -np.inf, dtype=np.float32)  # an empty nearest list: none
        kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

        def first(share: list[tuple[int, np.ndarray]]) -> None:
            kept.extend(self._best_in_list(lst, queries, scaled, k, floor)
                        for lst, queries in share)

        def rest(share: list[tuple[int, np.ndarray]]) -> None:
            kept.extend(self._at_or_above(lst, queries, scaled, floor)
                        for lst, queries in share)

        list(pool.map(first, self._shares(probes[:, 0], 1)))
        if probes.shape[1] > 1:
            list(pool.map(rest, self._shares(probes[:, 1:], probes.shape[1] - 1)))
        positions, best_values = _merge(kept, count, k)
        best_rows = self.rows[positions]
        short = np.flatnonzero(np.isneginf(best_values[:, -1]))
        if len(short):  # probed lists held fewer than k rows: answer those exactly
            stored, _ = self._exact.nearest(block[short], k)
            best_rows[short] = self.rows[stored]
            best_values[short] = self._closeness_of(block[short], stored)
        return best_rows, best_values

    def _shares(self, probed: np.ndarray,
                width: int) -> list[list[tuple[int, np.ndarray]]]:
        """The (list, its queries) pairs of ``probed`` (query x ``width`` list numbers)
        grouped by list, non-empty lists only, dealt out to the threads."""
        flat = probed.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(self.lists + 1))
        queries = order // width
        work = [(lst, queries[bounds[lst]:bounds[lst + 1]]) for lst in range(self.lists)
                if bounds[lst + 1] > bounds[lst] and self.offsets[lst + 1] > self.offsets[lst]]
        return [work[i::_THREADS] for i in range(_THREADS)]

    def _products(self, lst: int, queries: np.ndarray, scaled: np.ndarray) -> np.ndarray:
        """Closeness (queries x rows of the list): one float32 product for them all."""
        begin, end = self.offsets[lst], self.offsets[lst + 1]
        closeness = scaled[queries] @ self._columns[:, begin:end]
        if self.distance == "euclid":  # the others' bias is 0
            closeness -= self._bias[begin:end]
        return closeness

    def _best_in_list(self, lst: int, queries: np.ndarray, scaled: np.ndarray, k: int,
                      floor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the queries whose nearest list it is: their k-th best closeness there into
        ``floor`` (-inf when the list is shorter), and every row at or above it."""
        closeness = self._products(lst, queries, scaled)
        n = closeness.shape[1]
        if n < k:
            floor[queries] = -np.inf
            at, column = np.nonzero(np.ones_like(closeness, dtype=bool))
        else:
            kth = np.partition(closeness, n - k, axis=1)[:, n - k]
            floor[queries] = kth
            return self._kept(lst, queries, closeness, kth)
        return queries[at], closeness[at, column], self.offsets[lst] + column

    def _at_or_above(self, lst: int, queries: np.ndarray, scaled: np.ndarray,
                     floor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, closeness, stored position) of the list's rows at or above each
        query's floor."""
        closeness = self._products(lst, queries, scaled)
        return self._kept(lst, queries, closeness, floor[queries])

    def _kept(self, lst: int, queries: np.ndarray, closeness: np.ndarray,
              floor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, closeness, stored position) where ``closeness`` (queries x rows of
        the list) is at or above the query's ``floor``. Flat indices: ``np.nonzero`` on
        two dimensions, and fancy indexing with two arrays, cost more than the product."""
        flat = np.flatnonzero(closeness >= floor[:, np.newaxis])
        at, column = np.divmod(flat, closeness.shape[1])
        return queries[at], closeness.ravel()[flat], self.offsets[lst] + column

    def _list_scores(self, scaled: np.ndarray) -> np.ndarray:
        """Per (query, list), larger for lists more likely to hold its nearest rows: the
        nearest centres; for dot, the bound ``q.c + |q| r`` on every inner product in
        the list (mean c, radius r), as a few long rows decide the largest inner
        products wherever they fall and a centre stands for the many short ones."""
        scores = scaled @ self._centre_columns
        if self._radii is None:
            return scores - self._centre_bias
        norms = np.linalg.norm(scaled, axis=1, keepdims=True)
        return scores + norms * self._radii

    def _closeness_of(self, queries: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The closeness of given stored positions to each query."""
        stored = self.vectors[positions]  # (m, k, d)
        products = np.einsum("md,mkd->mk", queries * np.float32(self._scale), stored)
        if self.distance == "euclid":
            products -= (stored * stored).sum(axis=2)
        return products.astype(np.float32)


def _search_space(stored: np.ndarray, distance: str) -> np.ndarray:
    """The rows in the space where the metric is Euclidean (see the module docstring)."""
    if distance != "dot" or len(stored) == 0:
        return stored
    squared = (stored.astype(np.float64) ** 2).sum(axis=1)
    extra = np.sqrt(np.maximum(squared.max() - squared, 0.0)).astype(np.float32)
    return np.hstack([stored, extra[:, np.newaxis]])


def _means_and_radii(vectors: np.ndarray,
                     offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each list's mean row and the largest distance of its rows from it (0 if empty)."""
    means = np.zeros((len(offsets) - 1, vectors.shape[1]), dtype=np.float32)
    radii = np.zeros(len(offsets) - 1, dtype=np.float32)
    for lst, (begin, end) in enumerate(pairwise(offsets)):
        if end > begin:
            rows = vectors[begin:end]
            means[lst] = rows.mean(axis=0)
            radii[lst] = np.sqrt(((rows - means[lst]) ** 2).sum(axis=1).max())
    return means, radii


def _list_count(n: int, params: IvfParams) -> int:
    if n == 0:
        return 1
    return int(max(1, min(round(params.lists_per_sqrt * math.sqrt(n)), n // 8)))


def _kmeans(space: np.ndarray, lists: int, params: IvfParams) -> np.ndarray:
    """``lists`` centres by Lloyd's iterations on a seeded sample; an empty cluster keeps
    its centre."""
    if len(space) == 0:
        return np.zeros((1, space.shape[1]), dtype=np.float32)
    rng = np.random.default_rng(params.seed)
    size = min(len(space), lists * params.sample_per_list)
    sample = space[np.sort(rng.choice(len(space), size, replace=False))]
    centres = sample[rng.choice(len(sample), lists, replace=False)].astype(np.float32)
    for _ in range(params.iterations):
        labels = _assign(sample, centres)
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=lists)
        filled = np.flatnonzero(counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[filled]
        sums = np.add.reduceat(sample[order].astype(np.float64), starts, axis=0)
        centres[filled] = (sums / counts[filled, np.newaxis]).astype(np.float32)
    return centres


def _assign(space: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The nearest centre of every row (Euclid), in blocks."""
    bias = (centres * centres).sum(axis=1) * 0.5
    labels = np.empty(len(space), dtype=np.int64)
    step = max(1, _ASSIGN_ELEMENTS // len(centres))
    for start in range(0, len(space), step):
        scores = space[start:start + step] @ centres.T
        scores -= bias
        labels[start:start + step] = scores.argmax(axis=1)
    return labels


def _top_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns of the k largest values of each row, in no particular order."""
    n = scores.shape[1]
    if k >= n:
        return np.broadcast_to(np.arange(n), (len(scores), n)).copy()
    return np.argpartition(scores, n - k, axis=1)[:, n - k:]


def _merge(kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]], count: int,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``count`` queries' k best of the ``kept`` candidates (query, closeness,
    stored position), nearest first: positions and closeness; -inf (position 0) past
    a query's last candidate."""
    queries = np.concatenate([np.repeat(np.arange(count), k)] + [q for q, _, _ in kept])
    closeness = np.concatenate([np.full(count * k, -np.inf, dtype=np.float32)]
                               + [c for _, c, _ in kept])
    positions = np.concatenate([np.zeros(count * k, dtype=np.int64)]
                               + [p for _, _, p in kept])
    # Closest first, then (stable) by query: each query's candidates in a run, best first.
    by_value = np.argsort(-closeness)
    narrow = np.uint16 if count <= 1 << 16 else np.int64  # a radix sort below 2^16
    order = by_value[np.argsort(queries[by_value].astype(narrow), kind="stable")]
    starts = np.concatenate([[0], np.cumsum(np.bincount(queries, minlength=count))[:-1]])
    chosen = order[starts[:, np.newaxis] + np.arange(k)]  # k padding entries per query
    return positions[chosen], closeness[chosen]
