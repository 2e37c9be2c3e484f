"""The ``fit-mhb`` and ``recommend`` operations.

``recommend`` is incremental: only production records changed since the last run are
scored, unless the MHB model or the index version changed (or the operation's params
say ``full=true``), which rebuilds the reference and rescores everything. Records with a
``label_class`` are kept out of the queue.

The nearest training records come from memory (``TrainingNeighbours``, exact) for sets
with up to ``Settings.recommend_exact_knn_max`` training records, else from the query
engine; only the latter makes a run wait for the index and tie the queue to its version.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from chroma.catalog import ChangedRecord, Changes, Recommendations, ScoredRow
from chroma.control.context import OperationContext
from chroma.mhb import MHBModel
from chroma.recommend import ScoringReference, assess
from chroma.recommender.exact import TrainingNeighbours, exact_training_source
from chroma.recommender.neighbours import NeighbourSource, open_neighbour_source
from chroma.recommender.scoring import (
    ensure_mhb,
    fit_scoring_reference,
    parse_scores,
    signals_for,
)
from chroma.storage import read_columns

__all__ = ["run_fit_mhb", "run_recommend"]

INDEX_WAIT_S = 120.0
"""How long ``recommend`` waits for the index to catch up before scoring anyway."""

PAGE = 20_000


def _keys(ctx: OperationContext) -> list[str]:
    if ctx.operation.embedding_set_key:
        return [ctx.operation.embedding_set_key]
    return [es.key for es in ctx.catalog.list_embedding_sets()]


def run_fit_mhb(ctx: OperationContext) -> dict[str, Any]:
    """Fit (or keep) the MHB model of each embedding set's training data."""
    db = ctx.catalog.db
    fitted: dict[str, Any] = {}
    keys = _keys(ctx)
    for i, key in enumerate(keys):
        result = ensure_mhb(ctx.catalog, Recommendations(db), Changes(db), ctx.store, key)
        fitted[key] = {"version": result.version.version, "refitted": result.refitted,
                       "training_count": result.version.training_count}
        ctx.progress((i + 1) / len(keys), f"MHB of {key[:12]} v{result.version.version}")
    return {"models": fitted}


def run_recommend(ctx: OperationContext) -> dict[str, Any]:
    """Score new production records (or all, when the model changed) into the queue."""
    results = {}
    for key in _keys(ctx):
        results[key] = _recommend_one(ctx, key)
    return {"embedding_sets": results}


def _wait_for_index(ctx: OperationContext, changes: Changes, key: str) -> int | None:
    deadline = time.monotonic() + INDEX_WAIT_S
    while True:
        state = changes.index_state(key)
        latest = changes.latest_seq(key)
        if state is not None and state.indexed_seq >= latest:
            return state.version
        if time.monotonic() > deadline:
            return state.version if state else None
        ctx.progress(0.0, "waiting for the index to catch up")
        time.sleep(1.0)


def _neighbour_source(
    ctx: OperationContext, changes: Changes, queue: Recommendations, key: str
) -> tuple[NeighbourSource | None, int | None]:
    """Where this run's kNN answers come from, and the index version they depend on
    (None when they do not depend on the index)."""
    exact = exact_training_source(ctx.catalog, queue, changes, ctx.store, key,
                                  ctx.settings.recommend_exact_knn_max)
    if exact is not None:
        return exact, None
    source = open_neighbour_source(ctx.settings)
    return source, (_wait_for_index(ctx, changes, key) if source is not None else None)


def _recommend_one(ctx: OperationContext, key: str) -> dict[str, Any]:
    db = ctx.catalog.db
    changes, queue = Changes(db), Recommendations(db)
    if not queue.training_files(key):
        return {"skipped": "no training records yet: nothing to compare production with"}
    source, index_version = _neighbour_source(ctx, changes, queue, key)
    fitted = ensure_mhb(ctx.catalog, queue, changes, ctx.store, key)
    ctx.progress(0.05, f"MHB v{fitted.version.version}")
    state = queue.state(key)
    full = (
        bool(ctx.operation.params.get("full"))
        or state is None or state.reference is None
        or state.mhb_version != fitted.version.version or state.index_version != index_version
    )
    if full:
        reference = fit_scoring_reference(fitted.model, source, changes, ctx.store, key)
        after = 0
    else:
        assert state is not None and state.reference is not None
        reference = ScoringReference.from_dict(state.reference)
        after = state.scored_seq
    upto = changes.latest_seq(key)
    total = max(changes.live_count(key), 1)
    scored = 0
    for page in changes.iter_records_since(key, after, split="production", up_to_seq=upto,
                                           page=PAGE):
        rows = _score_page(fitted.model, source, key, page, reference, ctx)
        queue.upsert(key, rows, fitted.version.version)
        scored += len(rows)
        ctx.progress(0.1 + 0.85 * min(scored / total, 1.0), f"scored {scored} records")
    deleted = changes.deletions_since(key, after, up_to_seq=upto)
    queue.remove(key, [(d.dataset, d.record_id) for d in deleted])
    queue.save_state(key, mhb_version=fitted.version.version, index_version=index_version,
                     reference=reference.to_dict(), scored_seq=upto)
    knn = ("exact" if isinstance(source, TrainingNeighbours)
           else "index" if source is not None else None)
    return {"scored": scored, "removed": len(deleted), "full_refresh": full,
            "mhb_version": fitted.version.version, "knn": knn}


def _score_page(
    model: MHBModel, source: NeighbourSource | None, key: str, page: list[ChangedRecord],
    reference: ScoringReference, ctx: OperationContext,
) -> list[ScoredRow]:
    columns = read_columns(ctx.store, [(r.file_path, r.row_index) for r in page],
                           ["embedding", "scores"])
    vectors = np.asarray(columns["embedding"])
    signals, _ = signals_for(model, source, key, vectors, [r.inference_class for r in page],
                             [parse_scores(s) for s in columns["scores"]])
    assessments = assess(signals, reference)
    return [
        ScoredRow(
            dataset=r.dataset, record_id=r.record_id,
            score=a.score if np.isfinite(a.score) else 0.0,
            percentile=a.percentile if np.isfinite(a.percentile) else 0.0,
            verdict=a.verdict, signals=a.signals, raw_signals=a.raw_signals,
            input_uri=r.input_uri, inference_class=r.inference_class, tags=list(r.tags),
            logged_at=r.logged_at, labelled=r.label_class is not None,
        )
        for r, a in zip(page, assessments, strict=True)
    ]
