"""Shared by the recommend operation and the /log assessment: records in, signals out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chroma.catalog import Catalog, Changes, MHBVersion, Recommendations
from chroma.errors import NotFound
from chroma.mhb import (
    MHBModel,
    dump_model,
    fit_mhb,
    load_model,
    resolve_labels,
    score_mhb,
    training_fingerprint,
)
from chroma.recommend import ScoringReference, compute_signals, fit_reference, score_matrix
from chroma.recommender.neighbours import KnnAnswer, NeighbourSource, knn_inputs
from chroma.storage import FileStore, read_columns

__all__ = [
    "KNN_K",
    "REFERENCE_SAMPLE",
    "ensure_mhb",
    "fit_scoring_reference",
    "signals_for",
]

KNN_K = 10
"""Training neighbours per record for the kNN signals."""

REFERENCE_SAMPLE = 5_000
"""Training records scored to build the rank-normalisation reference (plenty: ~1e-2
percentile resolution)."""


@dataclass(frozen=True)
class FittedModel:
    version: MHBVersion
    model: MHBModel
    refitted: bool


def ensure_mhb(
    catalog: Catalog, recommendations: Recommendations, changes: Changes, store: FileStore,
    key: str,
) -> FittedModel:
    """The MHB model of the set's current training data, fitting it only if it changed."""
    files = recommendations.training_files(key)
    if not files:
        raise NotFound(f"embedding set {key} has no training records to fit MHB on")
    fingerprint = training_fingerprint({str(f): n for f, n in files},
                                       params={"method": "ledoit_wolf"})
    latest = recommendations.latest_mhb(key)
    if latest is not None and latest.fingerprint == fingerprint:
        return FittedModel(latest, load_model(store.read_bytes(latest.path)), refitted=False)
    rows = [r for page in changes.iter_records_since(key, 0, split="training") for r in page]
    columns = read_columns(store, [(r.file_path, r.row_index) for r in rows], ["embedding"])
    labels = resolve_labels([r.label_class for r in rows], [r.inference_class for r in rows])
    model = fit_mhb(np.asarray(columns["embedding"]), labels, fingerprint=fingerprint)
    path = f"{key}/_mhb/{fingerprint[:16]}.mhb"
    store.write_bytes(path, dump_model(model, metadata={"embedding_set_key": key}))
    recommendations.add_mhb(key, path, fingerprint, len(rows))
    version = recommendations.latest_mhb(key)
    assert version is not None
    return FittedModel(version, model, refitted=True)


def signals_for(
    model: MHBModel, source: NeighbourSource | None, key: str, vectors: np.ndarray,
    predicted: Sequence[str | None], scores: Sequence[dict[str, float] | None],
    exclude: Sequence[tuple[str, str]] | None = None,
) -> tuple[dict[str, np.ndarray], KnnAnswer | None]:
    """Every raw signal available for a batch of records, and their training neighbours."""
    predicted_or_none = list(predicted) if any(p is not None for p in predicted) else None
    mhb = score_mhb(model, vectors, predicted_or_none)
    knn = knn_inputs(source, key, vectors, KNN_K, exclude)
    matrix = None
    if any(s for s in scores):
        matrix, _ = score_matrix(list(scores))
    signals = compute_signals(
        mhb, knn_distances=knn.distances if knn else None, scores=matrix,
        predicted_class=list(predicted) if knn is not None else None,
        neighbour_labels=knn.labels if knn else None,
    )
    return signals, knn


def fit_scoring_reference(
    model: MHBModel, source: NeighbourSource | None, changes: Changes, store: FileStore,
    key: str, *, seed: int = 0,
) -> ScoringReference:
    """The reference: training records scored exactly like production (their label as the
    prediction, themselves excluded from their neighbours)."""
    rows = [r for page in changes.iter_records_since(key, 0, split="training") for r in page]
    if len(rows) > REFERENCE_SAMPLE:
        picks = np.random.default_rng(seed).choice(len(rows), REFERENCE_SAMPLE, replace=False)
        rows = [rows[i] for i in sorted(picks)]
    columns = read_columns(store, [(r.file_path, r.row_index) for r in rows],
                           ["embedding", "scores"])
    predicted = [r.label_class or r.inference_class for r in rows]
    signals, _ = signals_for(
        model, source, key, np.asarray(columns["embedding"]), predicted,
        [_parse_scores(s) for s in columns["scores"]],
        exclude=[(r.dataset, r.record_id) for r in rows],
    )
    return fit_reference(signals)


def _parse_scores(raw: Any) -> dict[str, float] | None:
    if raw is None:
        return None
    parsed = json.loads(raw) if isinstance(raw, str) else raw
    return {str(k): float(v) for k, v in parsed.items()} if parsed else None


parse_scores = _parse_scores
