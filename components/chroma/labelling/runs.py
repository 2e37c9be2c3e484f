"""The labelling runs: fit MHB, and score production records into the queue.

``recommend`` is incremental: only production records changed since the last run are
scored, unless the MHB model or the index version changed (or ``full`` is asked), which
rebuilds the reference and rescores everything; either way the queue ends up the same.
Records with a ``label_class`` are kept out of the queue. Pages of records are read and
written in threads while the one between is scored (``PAGE``), and the result reports
the seconds of each phase. An incremental run upserts its pages into the queue; a full
refresh stages them beside it and swaps the new queue in at its end
(``Recommendations.finish_refresh``), so readers never see a half-refreshed queue.

The nearest training records come from memory (``TrainingNeighbours``: exact, or an
inverted file from ``Settings.recommend_approximate_knn_min`` on) for sets with up to
``Settings.recommend_exact_knn_max`` training records, else from the query engine; only
the latter makes a run wait for the index and tie the queue to its version.

Owns: what one run over one embedding set does (:class:`LabellingJob`). Must not touch
the operation queue or process control: ``chroma.operations.labelling`` runs these as
operation handlers and passes progress reporting in.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from chroma.catalog import Catalog, ScoredPage
from chroma.labelling.neighbours import NeighbourSource, open_neighbour_source
from chroma.labelling.scorer import (
    FittedModel,
    TrainingSetLoader,
    current_mhb,
    ensure_mhb,
    fit_scoring_reference,
    mhb_limits,
    signals_for,
)
from chroma.labelling.training import TrainingNeighbours, exact_training_source, parse_scores
from chroma.scoring import MHBModel, ScoringReference, assess_columns
from chroma.scoring.nearest import one_blas_thread
from chroma.settings import Settings
from chroma.storage import FileStore, RecentTables, read_columns

__all__ = ["LabellingJob", "Progress", "fit_mhb_of", "recommend_one"]

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
"""Reports (fraction done, message); may raise to interrupt the run."""

INDEX_WAIT_S = 120.0
"""How long ``recommend`` waits for the index to catch up before scoring anyway."""

PAGE = 5_000
"""Production records per page. Each page is written into the queue (and the next one
read) in a thread while the next one is scored, so an incremental run of 10k records
overlaps its catalog work with its maths too."""

T = TypeVar("T")


def _no_progress(fraction: float, message: str) -> None:
    return None


@dataclass
class LabellingJob:
    """One labelling run over one embedding set: what it reads, writes and reports to.

    The training set is read at most once per job, by whoever needs it first (MHB fit,
    exact neighbours, scoring reference)."""

    catalog: Catalog
    store: FileStore
    settings: Settings
    key: str
    progress: Progress = _no_progress
    training: TrainingSetLoader = field(init=False)

    def __post_init__(self) -> None:
        self.training = TrainingSetLoader(
            self.catalog, self.store, self.key,
            keep_bytes=self.settings.recommend_training_cache_bytes)


def fit_mhb_of(job: LabellingJob) -> FittedModel:
    """Fit (or keep) the MHB model of the set's training data."""
    return ensure_mhb(job.catalog, job.store, job.key, job.training,
                      mhb_limits(job.settings))


def _wait_for_index(job: LabellingJob) -> int | None:
    changes = job.catalog.changes
    deadline = time.monotonic() + INDEX_WAIT_S
    while True:
        state = changes.index_state(job.key)
        latest = changes.latest_seq(job.key)
        if state is not None and state.indexed_seq >= latest:
            return state.version
        if time.monotonic() > deadline:
            return state.version if state else None
        job.progress(0.0, "waiting for the index to catch up")
        time.sleep(1.0)


def _neighbour_source(job: LabellingJob) -> tuple[NeighbourSource | None, int | None]:
    """Where this run's kNN answers come from, and the index version they depend on
    (None when they do not depend on the index)."""
    exact = exact_training_source(job.training.count(), job.settings, job.training)
    if exact is not None:
        return exact, None
    source = open_neighbour_source(job.settings)
    return source, (_wait_for_index(job) if source is not None else None)


def recommend_one(job: LabellingJob, *, full: bool = False) -> dict[str, Any]:
    """Score the set's new production records (or all of them) into the queue."""
    try:
        return _recommend(job, full)
    finally:
        job.training.forget_exact_search()  # a copy of the kept vectors, rebuilt in ms


def _recommend(job: LabellingJob, full: bool) -> dict[str, Any]:
    changes, queue, key = job.catalog.changes, job.catalog.queue, job.key
    if not job.training.files():
        # Consumed all the same: the set must not look behind for ever (a training
        # record committed after this read triggers another run).
        changes.mark_scored(key, changes.latest_seq(key))
        return {"skipped": "no training records yet: nothing to compare production with"}
    current = None if full else _up_to_date(job)
    if current is not None:
        mhb_version, knn = current
        return {"scored": 0, "removed": 0, "full_refresh": False, "mhb_version": mhb_version,
                "knn": knn, "skipped": "nothing new since the last run"}
    phases = Phases()
    with phases("prepare"):
        source, index_version = _neighbour_source(job)
        fitted = fit_mhb_of(job)
    job.progress(0.05, f"MHB v{fitted.version.version}")
    state = queue.state(key)
    full = (
        full or state is None or state.reference is None
        or state.mhb_version != fitted.version.version or state.index_version != index_version
    )
    with phases("prepare"):
        if full:
            reference = fit_scoring_reference(fitted.model, source, key, job.training())
            after = 0
        else:
            assert state is not None and state.reference is not None
            reference = ScoringReference.from_dict(state.reference)
            after = state.scored_seq
        upto = changes.latest_seq(key)
        if full:
            queue.forget_count(key)  # counted once at the end, not page by page
            queue.begin_refresh(key)
    count: int | None = None  # the set's entries after a full refresh's swap
    try:
        scored = _score_pages(job, fitted, source, reference, phases, after, upto, full)
        with phases("write"):
            deleted = changes.deletions_since(key, after, up_to_seq=upto)
            refs = [(d.dataset, d.record_id) for d in deleted]
            if full:
                count = queue.finish_refresh(key, refs)
            else:
                queue.remove(key, refs)
    except BaseException:
        if full:
            queue.abandon_refresh(key)
        raise
    with phases("write"):
        queue.save_state(key, mhb_version=fitted.version.version, index_version=index_version,
                         reference=reference.to_dict(), scored_seq=upto, recount=full,
                         count=count)
    knn = (("approximate" if source.approximate else "exact")
           if isinstance(source, TrainingNeighbours)
           else "index" if source is not None else None)
    return {"scored": scored, "removed": len(deleted), "full_refresh": full,
            "mhb_version": fitted.version.version, "knn": knn, "seconds": phases.rounded()}


def _score_pages(job: LabellingJob, fitted: FittedModel, source: NeighbourSource | None,
                 reference: ScoringReference, phases: Phases, after: int, upto: int,
                 full: bool) -> int:
    """Score the production records changed in (after, upto] page by page and write
    each page (upserted into the queue, or staged for a full refresh's swap) in a thread
    while the next one is scored; returns how many were scored."""
    queue, key, version = job.catalog.queue, job.key, fitted.version.version
    total = max(job.catalog.changes.live_count(key), 1)
    scored = 0
    with ThreadPoolExecutor(2, thread_name_prefix="recommend-io") as io:
        written: Future[Any] | None = None
        for page, columns in _prefetched(io, _pages(job, after, upto, phases)):
            with phases("score"):
                rows = _score_page(job, fitted.model, source, page, columns, reference)
            if written is not None:
                written.result()  # one write at a time, in page order
            written = (io.submit(phases.timed("write", queue.stage), key, rows, version)
                       if full else
                       io.submit(phases.timed("write", queue.upsert), key, rows, version))
            scored += len(rows)
            job.progress(0.1 + 0.85 * min(scored / total, 1.0), f"scored {scored} records")
        if written is not None:
            written.result()
    return scored


class Phases:
    """Seconds spent per phase of a run (threads add to their own phases): the run's
    result reports them, so a slow refresh says where its time went."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - began

    def timed(self, name: str, call: Callable[..., T]) -> Callable[..., T]:
        def timed_call(*args: Any, **kwargs: Any) -> T:
            with self(name):
                return call(*args, **kwargs)
        return timed_call

    def rounded(self) -> dict[str, float]:
        return {name: round(seconds, 3) for name, seconds in self.seconds.items()}


def _pages(job: LabellingJob, after: int, upto: int,
           phases: Phases) -> Iterator[tuple[pa.Table, dict[str, Any]]]:
    """The production records changed in (after, upto], page by page (columns, as
    ``Changes.record_columns_since`` reads them), with their ``embedding`` and
    ``scores`` read from the store (a file spanning pages read once, while its pages
    follow each other)."""
    changes, tables = job.catalog.changes, RecentTables(job.store, keep=2)
    while True:
        with phases("read"):
            page = changes.record_columns_since(job.key, after, split="production",
                                                up_to_seq=upto, limit=PAGE)
            if page.num_rows == 0:
                return
            after = page.column("change_seq")[-1].as_py()
            locations = zip(page.column("file_path").to_pylist(),
                            page.column("row_index").to_pylist(), strict=True)
            columns = read_columns(tables, list(locations), ["embedding", "scores"])
        yield page, columns


def _prefetched(pool: ThreadPoolExecutor, items: Iterator[T]) -> Iterator[T]:
    """``items``, each one fetched in ``pool`` while the caller works on the one before."""
    ahead = pool.submit(next, items, None)
    while (item := ahead.result()) is not None:
        ahead = pool.submit(next, items, None)
        yield item


def _up_to_date(job: LabellingJob) -> tuple[int, str] | None:
    """(MHB version, kNN mode) when the queue already holds everything a run would write:
    no change since the last run, the same MHB model, and (when kNN comes from the index)
    the same index version; else None. A few small queries: a run with nothing to do
    reads no training data and waits for no index."""
    changes, queue, key = job.catalog.changes, job.catalog.queue, job.key
    state = queue.state(key)
    if state is None or state.reference is None or changes.latest_seq(key) > state.scored_seq:
        return None
    _, model = current_mhb(job.catalog, key, mhb_limits(job.settings), job.training.files())
    if model is None or model.version != state.mhb_version:
        return None
    if 0 < job.training.count() <= job.settings.recommend_exact_knn_max:
        # Exact kNN: the index does not matter.
        return (model.version, "exact") if state.index_version is None else None
    index = changes.index_state(key)
    if (index is not None and index.indexed_seq >= state.scored_seq
            and index.version == state.index_version):
        return model.version, "index"
    return None


def _readable(
    key: str, page: pa.Table, vectors: np.ndarray, raw_scores: list[Any],
) -> tuple[pa.Table, np.ndarray, list[dict[str, float] | None]]:
    """The page without records whose stored scores cannot be read: one such record is
    skipped with a warning naming it, never the whole set's run."""
    if all(raw is None for raw in raw_scores):
        return page, vectors, list(raw_scores)
    keep: list[int] = []
    scores: list[dict[str, float] | None] = []
    for i, raw in enumerate(raw_scores):
        try:
            scores.append(parse_scores(raw))
        except ValueError as exc:
            log.warning("recommend %s: skipping record %s/%s: %s", key,
                        page.column("dataset")[i].as_py(), page.column("record_id")[i].as_py(), exc)
            continue
        keep.append(i)
    if len(keep) == len(raw_scores):
        return page, vectors, scores
    return page.take(pa.array(keep, pa.int64())), vectors[keep], scores


def _score_page(
    job: LabellingJob, model: MHBModel, source: NeighbourSource | None,
    page: pa.Table, columns: dict[str, Any], reference: ScoringReference,
) -> ScoredPage:
    vectors = np.asarray(columns["embedding"])
    page, vectors, scores = _readable(job.key, page, vectors, columns["scores"])
    if page.num_rows == 0:
        return ScoredPage(page, np.empty(0), np.empty(0), np.empty(0, bool), {}, {})
    with one_blas_thread():  # BLAS's two threads waited on each other (MHB scoring 3x)
        signals, _ = signals_for(model, source, job.key, vectors,
                                 page.column("inference_class").to_pylist(), scores)
    assessed = assess_columns(signals, reference)
    return ScoredPage(
        records=page,
        score=np.where(np.isfinite(assessed.score), assessed.score, 0.0),
        percentile=np.where(np.isfinite(assessed.percentile), assessed.percentile, 0.0),
        label=assessed.label, signals=assessed.signals, raw_signals=assessed.raw_signals,
    )
