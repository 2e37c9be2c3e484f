"""The assessment of production records on ``/log``: score, percentile, verdict, neighbours.

Ready for an embedding set once a ``recommend`` run has stored a scoring reference; the
model and reference are cached per MHB version, so an assessment costs one MHB scoring
and one kNN search of the logged records: in memory for sets small enough (the same
decision and the same exact search as the ``recommend`` run that fitted the reference,
``chroma.labelling.training``), else through the query engine.

Memory is bounded by ``Settings.assessor_cache_bytes``: the cache of ready sets is least
recently used first out, by bytes (model arrays, scoring factors, training vectors). A
set whose training vectors would not fit next to its model searches the query engine
instead; a model alone over the bound is not loaded and its set is not assessed (the
record is still committed: 202 without assessment).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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

CHECKED_MAX = 10_000
"""Readiness answers remembered (a timestamp and a version each; oldest out first)."""

TRAINING_ROW_OVERHEAD = 512
"""Bytes per in-memory training record besides its vectors (ids, classes, scores): an
estimate that errs high, to decide before reading whether the vectors fit."""

MEMORY_KNN_MAX = 100_000
"""Largest training set whose neighbours an API process searches in memory (also bounded
by ``Settings.recommend_exact_knn_max``); larger ones go through the query engine. The
search is built inside the first ``/log`` request after a new MHB version (the inverted
file of 100k x 128 took 2-5 s under load): a recommend run may search sets up to 1M in
memory, a request must not wait for that."""

V = TypeVar("V")


class ByteLRU(Generic[V]):
    """A mapping bounded by the sum of its entries' declared sizes; least recently used
    entries leave first. An entry larger than the bound is not kept. Not thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.total = 0
        self._entries: OrderedDict[str, tuple[int, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: str, value: V, size: int) -> bool:
        """Keep ``value`` (evicting others as needed); False when it alone is too big."""
        self.pop(key)
        if size > self.max_bytes:
            return False
        while self._entries and self.total + size > self.max_bytes:
            _, (evicted, _) = self._entries.popitem(last=False)
            self.total -= evicted
        self._entries[key] = (size, value)
        self.total += size
        return True

    def pop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.total -= entry[0]


@dataclass(frozen=True)
class _Ready:
    """What assessing an embedding set needs, once its recommender is ready."""

    version: int
    """The MHB version this was built for."""
    model: MHBModel
    reference: ScoringReference
    exact: TrainingNeighbours | None
    """The training vectors in memory, or None: search the query engine."""
    nbytes: int
    """What this holds in memory (model, scoring factors, training vectors)."""


class Assessor:
    """Assesses production records of sets whose recommender is ready; thread-safe."""

    def __init__(self, settings: Settings, catalog: Catalog, store: FileStore) -> None:
        self.settings = settings
        self.catalog = catalog
        self.recommendations = catalog.queue
        self.store = store
        self._lock = threading.Lock()
        self._cache: ByteLRU[_Ready] = ByteLRU(settings.assessor_cache_bytes)
        self._source: NeighbourSource | None = None
        self._source_opened = False
        # key -> (when asked, the MHB version found ready or None): a few bytes per set.
        self._checked: OrderedDict[str, tuple[float, int | None]] = OrderedDict()
        # key -> MHB version found too large: not read again until a new version.
        self._too_large: OrderedDict[str, int] = OrderedDict()

    recheck_s = 2.0
    """How long a *ready* answer (and the model it found) is reused before asking the
    catalog again: keeps single-record logging at one catalog round trip."""
    unready_recheck_s = 0.25
    """How long a *not ready* answer is reused: short, so that the first log after the
    recommender became ready carries its assessment (with 2 s, the README's curl right
    after the quickstart answered 202), while a burst of logs before that still costs
    at most a few catalog reads a second."""

    def known_unready(self, key: str) -> bool:
        """True when a recent answer (within ``recheck_s``) said ``key`` is not ready: the
        caller may skip :meth:`assess` without asking the catalog (no thread hop)."""
        with self._lock:
            checked = self._checked.get(key)
        return (checked is not None and checked[1] is None
                and time.monotonic() - checked[0] < self.unready_recheck_s)

    @property
    def cached_bytes(self) -> int:
        """Bytes held by the cache of ready sets (at most ``assessor_cache_bytes``)."""
        with self._lock:
            return self._cache.total

    def _ready(self, key: str) -> _Ready | None:
        now = time.monotonic()
        with self._lock:
            checked = self._checked.get(key)
            if checked is not None and checked[1] is None:
                if now - checked[0] < self.unready_recheck_s:
                    return None
            elif checked is not None and now - checked[0] < self.recheck_s:
                cached = self._cache.get(key)
                if cached is not None and cached.version == checked[1]:
                    return cached
        ready = self._load(key)
        with self._lock:
            _remember(self._checked, key, (now, ready.version if ready else None))
        return ready

    def _load(self, key: str) -> _Ready | None:
        state = self.recommendations.state(key)
        if state is None or state.reference is None or state.mhb_version is None:
            return None
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached.version == state.mhb_version:
            return cached
        latest = self.recommendations.latest_mhb(key)
        if latest is None or latest.version != state.mhb_version:
            return None  # a new model is being fitted; the reference is not its own yet
        with self._lock:
            if self._too_large.get(key) == latest.version:
                return None
        room = self.settings.assessor_cache_bytes
        model = load_model(self.store.read_bytes(latest.path))
        model_bytes = model.memory_bytes()
        if model_bytes > room:
            with self._lock:
                _remember(self._too_large, key, latest.version)
            log.warning("MHB model of %s holds %d MiB, over CHROMA_ASSESSOR_CACHE_BYTES "
                        "(%d MiB): its records are not assessed on /log", key,
                        model_bytes >> 20, room >> 20)
            return None
        # A new MHB version means new training data: the training vectors are read again,
        # if they fit beside the model; else the query engine finds the neighbours.
        training = TrainingSetLoader(self.catalog, self.store, key)
        count = training.count()
        vector_bytes = count * (8 * model.dimension + TRAINING_ROW_OVERHEAD)
        in_memory = model_bytes + vector_bytes <= room
        limit = min(self.settings.recommend_exact_knn_max, MEMORY_KNN_MAX)
        exact = exact_training_source(count, self.settings, training,
                                      limit=limit if in_memory else 0)
        ready = _Ready(latest.version, model, ScoringReference.from_dict(state.reference),
                       exact, model_bytes + (vector_bytes if exact is not None else 0))
        with self._lock:
            self._cache.put(key, ready, ready.nbytes)
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


def _remember(entries: OrderedDict[str, Any], key: str, value: Any) -> None:
    """Set ``entries[key]`` as the newest; drop the oldest beyond ``CHECKED_MAX``."""
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > CHECKED_MAX:
        entries.popitem(last=False)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
