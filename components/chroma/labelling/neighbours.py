"""Where kNN answers come from: the query engine's read side, whatever the mode.

The recommender only needs ``search``; when the query engine cannot be opened (not
built yet, not reachable) the kNN-based signals are left out rather than failing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from chroma.settings import Settings

__all__ = [
    "KnnAnswer", "NeighbourSource", "TrainingSource", "knn_inputs", "open_neighbour_source",
]

log = logging.getLogger(__name__)


class NeighbourSource(Protocol):
    def search(self, key: str, queries: np.ndarray, k: int = 10,
               filter: Any = None) -> list[list[Any]]: ...


@runtime_checkable
class TrainingSource(NeighbourSource, Protocol):
    """A source holding only training records, answering :func:`knn_inputs` directly."""

    def knn_answer(self, queries: np.ndarray, k: int,
                   exclude: Sequence[tuple[str, str]] | None = None) -> KnnAnswer: ...


def open_neighbour_source(settings: Settings) -> NeighbourSource | None:
    """The query engine's reader for this process, or None when there is none."""
    try:
        from chroma.index.hosting import open_reader
    except ImportError:
        log.info("no query engine reader in this build: kNN signals are left out")
        return None
    try:
        return open_reader(settings)
    except Exception as exc:  # the engine may be away; scoring goes on without kNN
        log.warning("query engine unavailable, kNN signals left out: %s", exc)
        return None


@dataclass(frozen=True)
class KnnAnswer:
    """The k nearest training records of each row."""

    distances: np.ndarray
    """(n, k), NaN where fewer than k neighbours exist."""
    labels: list[list[str | None]]
    """Their label (or predicted) class."""
    refs: list[list[tuple[str, str]]]
    """Their (dataset, record id)."""


def knn_inputs(
    source: NeighbourSource | None, key: str, vectors: np.ndarray, k: int,
    exclude: Sequence[tuple[str, str]] | None = None,
) -> KnnAnswer | None:
    """The k nearest *training* records of each row, or None without a query engine.

    ``exclude``: per row, the record itself (dataset, id), left out of its own
    neighbours (for the training reference)."""
    if source is None or len(vectors) == 0:
        return None
    if isinstance(source, TrainingSource):
        return source.knn_answer(vectors, k, exclude)
    from chroma.index import SearchFilter

    extra = 1 if exclude is not None else 0
    try:
        answers = source.search(key, vectors, k=k + extra,
                                filter=SearchFilter(split="training"))
    except Exception as exc:
        log.warning("kNN search failed, kNN signals left out: %s", exc)
        return None
    distances = np.full((len(vectors), k), np.nan)
    labels: list[list[str | None]] = []
    refs: list[list[tuple[str, str]]] = []
    for row, neighbours in enumerate(answers):
        own = exclude[row] if exclude is not None else None
        kept = [n for n in neighbours if (n.dataset, n.record_id) != own][:k]
        for column, neighbour in enumerate(kept):
            distances[row, column] = neighbour.distance
        labels.append([
            (n.payload or {}).get("label_class") or (n.payload or {}).get("inference_class")
            for n in kept
        ])
        refs.append([(n.dataset, n.record_id) for n in kept])
    return KnnAnswer(distances, labels, refs)
