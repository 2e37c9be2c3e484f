"""The assessment of production records on ``/log``: score, percentile, verdict, neighbours.

Ready for an embedding set once a ``recommend`` run has stored a scoring reference; the
model and reference are cached per MHB version, so an assessment costs one MHB scoring
and one kNN search of the logged records: in memory for sets small enough (the same
decision and the same exact search as the ``recommend`` run that fitted the reference,
``chroma.labelling.training``), else through the query engine.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from chroma.catalog import Catalog
from chroma.labelling.neighbours import NeighbourSource, open_neighbour_source
from chroma.labelling.scorer import TrainingSetLoader, signals_for
from chroma.labelling.training import TrainingNeighbours, exact_training_source, parse_scores
from chroma.scoring import MHBModel, ScoringReference, assess, load_model
from chroma.settings import Settings
from chroma.storage import FileStore, RecordBatch

__all__ = ["Assessor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Ready:
    """What assessing an embedding set needs, once its recommender is ready."""

    model: MHBModel
    reference: ScoringReference
    exact: TrainingNeighbours | None
    """The training vectors in memory, or None: search the query engine."""


class Assessor:
    """Assesses production records of sets whose recommender is ready; thread-safe."""

    def __init__(self, settings: Settings, catalog: Catalog, store: FileStore) -> None:
        self.settings = settings
        self.catalog = catalog
        self.recommendations = catalog.queue
        self.store = store
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, _Ready]] = {}
        self._source: NeighbourSource | None = None
        self._source_opened = False
        self._checked: dict[str, tuple[float, _Ready | None]] = {}

    recheck_s = 2.0
    """How long a readiness answer (and the model it found) is reused before asking the
    catalog again: keeps single-record logging at one catalog round trip."""

    def known_unready(self, key: str) -> bool:
        """True when a recent answer (within ``recheck_s``) said ``key`` is not ready: the
        caller may skip :meth:`assess` without asking the catalog (no thread hop)."""
        with self._lock:
            checked = self._checked.get(key)
        return (checked is not None and checked[1] is None
                and time.monotonic() - checked[0] < self.recheck_s)

    def _ready(self, key: str) -> _Ready | None:
        now = time.monotonic()
        with self._lock:
            checked = self._checked.get(key)
        if checked is not None and now - checked[0] < self.recheck_s:
            return checked[1]
        ready = self._load(key)
        with self._lock:
            self._checked[key] = (now, ready)
        return ready

    def _load(self, key: str) -> _Ready | None:
        state = self.recommendations.state(key)
        if state is None or state.reference is None or state.mhb_version is None:
            return None
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == state.mhb_version:
                return cached[1]
        latest = self.recommendations.latest_mhb(key)
        if latest is None or latest.version != state.mhb_version:
            return None  # a new model is being fitted; the reference is not its own yet
        # A new MHB version means new training data: the training vectors are read again.
        training = TrainingSetLoader(self.catalog, self.store, key)
        exact = exact_training_source(training.count(), self.settings.recommend_exact_knn_max,
                                      training)
        ready = _Ready(load_model(self.store.read_bytes(latest.path)),
                       ScoringReference.from_dict(state.reference), exact)
        with self._lock:
            self._cache[key] = (latest.version, ready)
        return ready

    def _neighbours(self) -> NeighbourSource | None:
        if not self._source_opened:
            self._source = open_neighbour_source(self.settings)
            self._source_opened = True
        return self._source

    def assess(self, key: str, batch: RecordBatch) -> list[dict[str, Any]] | None:
        """One assessment per record of ``batch``, or None when not ready for ``key``."""
        try:
            ready = self._ready(key)
            if ready is None:
                return None
            scores = [parse_scores(s) for s in batch.scores_json]
            source = ready.exact if ready.exact is not None else self._neighbours()
            signals, knn = signals_for(ready.model, source, key, batch.embeddings,
                                       batch.inference_classes, scores)
            results = assess(signals, ready.reference)
        except Exception:  # an assessment is a bonus; the write already succeeded
            log.warning("assessment failed for %s", key, exc_info=True)
            return None
        return [
            {
                "id": record_id,
                "dataset": batch.dataset,
                "score": _finite(a.score),
                "percentile": _finite(a.percentile),
                "verdict": a.verdict,
                "signals": a.signals,
                "nearest_training": [
                    {"dataset": dataset, "id": neighbour_id, "distance": _finite(distance)}
                    for (dataset, neighbour_id), distance in zip(
                        knn.refs[row], knn.distances[row], strict=False)
                ] if knn is not None else [],
            }
            for row, (record_id, a) in enumerate(zip(batch.ids, results, strict=True))
        ]


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
