"""The training records of an embedding set, read once per run, and exact kNN over them.

A ``recommend`` run needs the training data three times: to fit MHB (when it changed),
to score the scoring reference (a sample of it), and to answer each production record's
nearest training records. :class:`TrainingSet` reads the records and their ``embedding``
and ``scores`` columns from the store once; the job (``chroma.labelling.runs``) and the
assessor cache hold it for everyone who needs it.

Nearest training records: through the query engine that is one filtered HNSW search per
record in the index host (~730 records/s end to end with 20k training records, ``bench/
refresh.py``); in memory (:class:`TrainingNeighbours`, ``chroma.scoring.nearest``) it is
exact and a matrix product, several times faster up to ~100k records; from
``Settings.recommend_approximate_knn_min`` training records on it is approximate (an
inverted file, ``chroma.scoring.ivf``), for a 1M refresh to fit in about a minute. So the
labelling runs use the memory path below ``Settings.recommend_exact_knn_max`` training records
(:func:`exact_training_source`: the one decision, shared with the assessor) and the
query engine above.

Owns: loading a set's training records and vectors, and the search over them. Must not
touch the index; it answers like ``QueryEngine.search`` (``Neighbour``s, the index's
distances).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, overload

import numpy as np
import pyarrow as pa

from chroma.catalog import Catalog, StoredRecord
from chroma.index import Neighbour
from chroma.labelling.neighbours import KnnAnswer
from chroma.scoring import ExactNearest, IvfNearest
from chroma.settings import Settings
from chroma.storage import FileStore, read_columns

__all__ = ["TrainingNeighbours", "TrainingRefs", "TrainingSet", "exact_training_source",
           "parse_scores"]

log = logging.getLogger(__name__)


def parse_scores(raw: Any) -> dict[str, float] | None:
    """A record's stored ``scores`` (JSON text or a mapping) as class -> probability.

    ``ValueError`` when they are not class -> finite number: ``/log`` refuses such scores,
    but records stored before it did may hold them (the callers skip those, warning)."""
    if raw is None:
        return None
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
        scores = {str(k): float(v) for k, v in parsed.items()} if parsed else None
    except (TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"scores {str(raw)[:80]!r} are not class -> number") from exc
    if scores and not all(math.isfinite(v) for v in scores.values()):
        raise ValueError(f"scores {str(raw)[:80]!r} hold a non-finite number")
    return scores


def _intern(text: str | None) -> str | None:
    """One shared string per value: a set's classes and datasets repeat, and the catalog
    rows gave each row strings of its own (~11 MiB for 100k kept records)."""
    return None if text is None else sys.intern(text)


def _training_scores(raw: Any, record: StoredRecord) -> dict[str, float] | None:
    """A training record's scores, or None (with a warning naming it) when unreadable."""
    try:
        return parse_scores(raw)
    except ValueError as exc:
        log.warning("training record %s/%s: its scores are ignored: %s",
                    record.dataset, record.record_id, exc)
        return None


class TrainingRefs(Sequence[tuple[str, str]]):
    """The (dataset, record id) of each training row, as columns: a dataset code per row
    (into one interned string per dataset) and the record ids in one Arrow string array.

    A tuple and a string per row kept ~43 MiB of Python heap resident after 100k records
    (the freed blocks stay held); here a row costs its id's bytes, an offset and a code.
    Tuples are made only for the rows asked for (:meth:`take` for many at once)."""

    def __init__(self, refs: Iterable[tuple[str, str]]) -> None:
        code_of: dict[str, int] = {}
        codes: list[int] = []
        ids: list[str] = []
        for dataset, record_id in refs:
            codes.append(code_of.setdefault(dataset, len(code_of)))
            ids.append(record_id)
        self.datasets: list[str] = [sys.intern(d) for d in code_of]
        self.codes = np.asarray(codes, dtype=np.int32)
        self.ids = pa.array(ids, type=pa.string())

    def __len__(self) -> int:
        return len(self.codes)

    @overload
    def __getitem__(self, row: int) -> tuple[str, str]: ...

    @overload
    def __getitem__(self, row: slice) -> list[tuple[str, str]]: ...

    def __getitem__(self, row: int | slice) -> tuple[str, str] | list[tuple[str, str]]:
        if isinstance(row, slice):
            return self.take(np.arange(len(self))[row])
        row = int(row)
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(row)
        return self.datasets[self.codes[row]], self.ids[row].as_py()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.take(np.arange(len(self))))

    def take(self, rows: np.ndarray) -> list[tuple[str, str]]:
        """The refs of ``rows`` (a 1-d array of row numbers), in that order."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        datasets = self.datasets
        ids = self.ids.take(pa.array(rows)).to_pylist()
        return [(datasets[c], i) for c, i in zip(self.codes[rows].tolist(), ids, strict=True)]

    def take_rows(self, rows: np.ndarray) -> list[list[tuple[str, str]]]:
        """The refs of a 2-d array of row numbers, as one list per row. A training row
        found by many queries gets one tuple, shared (half the time of one per hit)."""
        unique, inverse = np.unique(rows, return_inverse=True)
        shared = np.empty(len(unique), dtype=object)
        shared[:] = self.take(unique)  # a 1-d target: the tuples are kept whole
        return shared[inverse.reshape(rows.shape)].tolist()


@dataclass
class TrainingSet:
    """Every live training record of one embedding set, with its vector and scores."""

    refs: TrainingRefs
    """(dataset, record id) per row (a sequence of tuples is turned into columns)."""
    labels: list[str | None]
    predicted: list[str | None]
    vectors: np.ndarray
    """(n, d) float32, as logged."""
    scores: list[dict[str, float] | None] = field(default_factory=list)
    distance: str = "cosine"
    _neighbours: dict[int, TrainingNeighbours] = field(default_factory=dict, repr=False,
                                                       compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.refs, TrainingRefs):
            self.refs = TrainingRefs(self.refs)

    @classmethod
    def load(cls, catalog: Catalog, store: FileStore, key: str) -> TrainingSet:
        rows: list[StoredRecord] = [
            r for page in catalog.changes.iter_records_since(key, 0, split="training")
            for r in page]
        columns = read_columns(store, [(r.file_path, r.row_index) for r in rows],
                               ["embedding", "scores"])
        return cls(
            refs=TrainingRefs((r.dataset, r.record_id) for r in rows),
            labels=[_intern(r.label_class) for r in rows],
            predicted=[_intern(r.inference_class) for r in rows],
            vectors=np.asarray(columns["embedding"], dtype=np.float32).reshape(len(rows), -1),
            scores=[_training_scores(s, r) for s, r in zip(columns["scores"], rows, strict=True)],
            distance=catalog.get_embedding_set(key).distance,
        )

    def __len__(self) -> int:
        return len(self.refs)

    def neighbours(self, approximate_min: int) -> TrainingNeighbours:
        """The search over these vectors, built once per set and switch (it normalises a
        copy; from ``approximate_min`` rows on, ``Settings.recommend_approximate_knn_min``
        of the caller, it also builds the IVF)."""
        built = self._neighbours.get(approximate_min)
        if built is None:
            built = TrainingNeighbours(self, approximate_min)
            self._neighbours = {approximate_min: built}  # one search kept per set
        return built

    def forget_exact_search(self) -> None:
        """Drop an exact search built over these vectors (its normalised copy is as large
        as they are: 10 MB at 20k x 128, kept between runs with the set); the next run
        rebuilds it in milliseconds. An inverted file, which takes seconds, stays."""
        self._neighbours = {at: built for at, built in self._neighbours.items()
                            if built.approximate}

    def sample(self, size: int, *, seed: int = 0) -> list[int]:
        """Up to ``size`` row numbers, in order, drawn without replacement."""
        if len(self) <= size:
            return list(range(len(self)))
        return sorted(np.random.default_rng(seed).choice(len(self), size, replace=False))


class TrainingNeighbours:
    """A :class:`~chroma.labelling.neighbours.NeighbourSource` over training vectors."""

    def __init__(self, training: TrainingSet, approximate_min: int) -> None:
        self.training = training
        # The one switch: exact below ``approximate_min`` training records (the caller's
        # ``Settings.recommend_approximate_knn_min``), an inverted file (same metrics,
        # distances and shapes) from there on.
        self.approximate = 0 < approximate_min <= len(training)
        self.rows = (IvfNearest if self.approximate else ExactNearest)(
            training.vectors, training.distance)
        # The class a neighbour votes for: its label, else what the model predicted.
        self.classes = [label or predicted for label, predicted
                        in zip(training.labels, training.predicted, strict=True)]

    def __len__(self) -> int:
        return len(self.training)

    def search(
        self, key: str, queries: np.ndarray, k: int = 10, filter: Any = None
    ) -> list[list[Neighbour]]:
        """The ``k`` nearest training records of each query row, nearest first.

        ``filter`` is ignored: every vector here is a training record, which is all the
        recommender ever asks for."""
        rows, distances = self.rows.nearest(queries, k)
        return [[self._neighbour(int(i), float(d)) for i, d in zip(ids, ds, strict=True)]
                for ids, ds in zip(rows, distances, strict=True)]

    def knn_answer(
        self, queries: np.ndarray, k: int, exclude: Sequence[tuple[str, str]] | None = None
    ) -> KnnAnswer:
        """What ``knn_inputs`` makes of :meth:`search`, straight from the arrays (no
        ``Neighbour`` per hit: they were a sixth of a refresh)."""
        if exclude is None:
            return self._knn_answer_all(queries, k)
        rows, found = self.rows.nearest(queries, k + 1)
        candidates = self.training.refs.take_rows(rows)
        distances = np.full((len(rows), k), np.nan)
        labels: list[list[str | None]] = []
        refs: list[list[tuple[str, str]]] = []
        for row, (ids, row_distances, row_refs) in enumerate(
                zip(rows.tolist(), found.tolist(), candidates, strict=True)):
            own = exclude[row]
            kept = [(i, d, ref) for i, d, ref in zip(ids, row_distances, row_refs, strict=True)
                    if ref != own][:k]
            distances[row, :len(kept)] = [d for _, d, _ in kept]
            labels.append([self.classes[i] for i, _, _ in kept])
            refs.append([ref for _, _, ref in kept])
        return KnnAnswer(distances, labels, refs)

    def _knn_answer_all(self, queries: np.ndarray, k: int) -> KnnAnswer:
        """:meth:`knn_answer` without exclusions (production records): every row has the
        same number of neighbours, so labels and refs are picked by array indexing, not
        a Python loop per record (a tenth of a refresh once the search got faster)."""
        rows, found = self.rows.nearest(queries, k)
        distances = np.full((len(rows), k), np.nan)
        distances[:, :rows.shape[1]] = found
        return KnnAnswer(distances, self._class_array[rows].tolist(),
                         self.training.refs.take_rows(rows))

    @cached_property
    def _class_array(self) -> np.ndarray:
        classes = np.empty(len(self.classes), dtype=object)
        classes[:] = self.classes
        return classes

    def _neighbour(self, row: int, distance: float) -> Neighbour:
        dataset, record_id = self.training.refs[row]
        return Neighbour(record_id=record_id, dataset=dataset, split="training",
                         distance=distance, input_uri=None,
                         payload={"label_class": self.training.labels[row],
                                  "inference_class": self.training.predicted[row]})


def exact_training_source(
    training_count: int, settings: Settings, training: Callable[[], TrainingSet], *,
    limit: int | None = None,
) -> TrainingNeighbours | None:
    """The in-memory source when the set has 1..``limit`` training records (default
    ``settings.recommend_exact_knn_max``), else None: use the query engine; approximate
    from ``settings.recommend_approximate_knn_min`` records on. The one decision for a
    ``recommend`` run and the assessments on ``/log`` (which pass a lower ``limit``: a
    request does not wait for a large search to be built). ``training`` loads (or
    returns the loaded) set only when it is needed."""
    if limit is None:
        limit = settings.recommend_exact_knn_max
    if not 0 < training_count <= limit:
        return None
    return training().neighbours(settings.recommend_approximate_knn_min)
