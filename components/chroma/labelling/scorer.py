"""Shared by the labelling runs and the ``/log`` assessment: records in, signals out.

Owns: keeping the MHB model of a set's training data (fit only when the training data
or the ``Settings.mhb_*`` limits changed), the raw signals of a batch of records, and the
scoring reference (training records scored exactly like production). The maths is
``chroma.scoring``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chroma.catalog import Catalog, MHBVersion
from chroma.errors import NotFound
from chroma.labelling.neighbours import KnnAnswer, NeighbourSource, knn_inputs
from chroma.labelling.training import TrainingSet
from chroma.scoring import (
    MHBLimits,
    MHBModel,
    ScoringReference,
    compute_signals,
    dump_model,
    fit_mhb,
    fit_reference,
    load_model,
    resolve_labels,
    score_matrix,
    score_mhb,
    training_fingerprint,
)
from chroma.settings import Settings
from chroma.storage import FileStore

__all__ = [
    "KNN_K",
    "REFERENCE_SAMPLE",
    "FittedModel",
    "current_mhb",
    "ensure_mhb",
    "fit_scoring_reference",
    "mhb_limits",
    "signals_for",
]

log = logging.getLogger(__name__)

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


def mhb_limits(settings: Settings) -> MHBLimits:
    """The MHB fit limits of ``settings`` (``CHROMA_MHB_*``)."""
    return MHBLimits(
        max_dimension=settings.mhb_max_dimension,
        max_classes=settings.mhb_max_classes,
        class_rank=settings.mhb_class_rank,
        max_model_bytes=settings.mhb_max_model_bytes,
    )


def ensure_mhb(
    catalog: Catalog, store: FileStore, key: str, training: TrainingSetLoader,
    limits: MHBLimits | None = None,
) -> FittedModel:
    """The MHB model of the set's current training data, fitting it only if it changed
    (``training`` is called, and the set read, only then).

    ``limits``: default from this process's settings (environment). A fit over them
    raises ``InvalidInput`` saying which limit: the operation fails with that message."""
    limits = limits or mhb_limits(Settings())
    fingerprint, latest = current_mhb(catalog, key, limits, training.files())
    if latest is not None:
        return FittedModel(latest, _loaded_model(catalog, store, key, latest), refitted=False)
    data = training()
    model = fit_mhb(data.vectors, resolve_labels(data.labels, data.predicted),
                    fingerprint=fingerprint, limits=limits)
    if model.info.merged_classes:
        log.warning("MHB of %s: %d classes (%d records) beyond CHROMA_MHB_MAX_CLASSES=%d "
                    "count as unlabelled", key, model.info.merged_classes,
                    model.info.merged_records, limits.max_classes)
    path = f"{key}/_mhb/{fingerprint[:16]}.mhb"
    store.write_bytes(path, dump_model(model, metadata={"embedding_set_key": key}))
    catalog.queue.add_mhb(key, path, fingerprint, len(data))
    version = catalog.queue.latest_mhb(key)
    assert version is not None
    _keep_model(catalog, key, version, model)  # lossless: what loading it would give
    return FittedModel(version, model, refitted=True)


_models: dict[tuple[str, str], tuple[MHBVersion, MHBModel]] = {}
"""The MHB model last loaded in this process, by (catalog DSN, set), with its scoring
factors once derived (a Cholesky per class: seconds per run at a dozen classes). One
model at a time: a model may be hundreds of MiB (``CHROMA_MHB_MAX_MODEL_BYTES``)."""

_MODELS_KEPT = 1


def _loaded_model(catalog: Catalog, store: FileStore, key: str,
                  version: MHBVersion) -> MHBModel:
    where = (catalog.db.dsn, key)
    kept = _models.get(where)
    if kept is not None and kept[0] == version:
        return kept[1]
    model = load_model(store.read_bytes(version.path))
    _keep_model(catalog, key, version, model)
    return model


def _keep_model(catalog: Catalog, key: str, version: MHBVersion, model: MHBModel) -> None:
    """Keep ``model`` for the next run over the set in this process: a model just fitted
    too, or the run after a refit loaded it again and derived its factors anew (seconds)."""
    where = (catalog.db.dsn, key)
    _models.pop(where, None)
    while len(_models) >= _MODELS_KEPT:  # the oldest loaded first
        _models.pop(next(iter(_models)))
    _models[where] = (version, model)


def current_mhb(
    catalog: Catalog, key: str, limits: MHBLimits,
    files: list[tuple[int, int]] | None = None,
) -> tuple[str, MHBVersion | None]:
    """The fingerprint of the set's training data under ``limits``, and the stored model
    fitted on exactly that (None: a fit is due). Two small queries, no data read;
    ``files``: the training files when the caller already has them (one query less)."""
    files = catalog.queue.training_files(key) if files is None else files
    if not files:
        raise NotFound(f"embedding set {key} has no training records to fit MHB on")
    fingerprint = training_fingerprint({str(f): n for f, n in files},
                                       params={"method": "ledoit_wolf", **limits.as_params()})
    latest = catalog.queue.latest_mhb(key)
    return fingerprint, (latest if latest is not None and latest.fingerprint == fingerprint
                         else None)


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
    model: MHBModel, source: NeighbourSource | None, key: str, training: TrainingSet,
    *, seed: int = 0,
) -> ScoringReference:
    """The reference: training records scored exactly like production (their label as the
    prediction, themselves excluded from their neighbours)."""
    rows = training.sample(REFERENCE_SAMPLE, seed=seed)
    signals, _ = signals_for(
        model, source, key, training.vectors[rows],
        [training.labels[i] or training.predicted[i] for i in rows],
        [training.scores[i] for i in rows],
        exclude=[training.refs[i] for i in rows],
    )
    return fit_reference(signals)


_kept: dict[tuple[str, str], tuple[list[tuple[int, int]], TrainingSet]] = {}
"""The last training set a loader with ``keep_bytes`` read in this process, by (catalog
DSN, set key), with the training files (id, live records) it was read from: the set's
fingerprint, as for the MHB model."""


class TrainingSetLoader:
    """Reads a set's :class:`TrainingSet` on first call, then returns the same one.

    ``keep_bytes`` > 0: the set (up to that many bytes of vectors) also outlives the
    loader, for the next loader of the same set in this process, while the set's training
    files are unchanged (one small query checks it). One set is kept at a time."""

    def __init__(self, catalog: Catalog, store: FileStore, key: str, *,
                 keep_bytes: int = 0) -> None:
        self.catalog, self.store, self.key = catalog, store, key
        self.keep_bytes = keep_bytes
        self._loaded: TrainingSet | None = None
        self._files: list[tuple[int, int]] | None = None

    def __call__(self) -> TrainingSet:
        if self._loaded is None:
            self._loaded = self._kept_or_load()
        return self._loaded

    def _kept_or_load(self) -> TrainingSet:
        if self.keep_bytes <= 0:
            return TrainingSet.load(self.catalog, self.store, self.key)
        files = sorted(self.files())
        where = (self.catalog.db.dsn, self.key)
        kept = _kept.get(where)
        if kept is not None and kept[0] == files:
            return kept[1]
        _kept.clear()  # before the read: never two sets at once
        loaded = TrainingSet.load(self.catalog, self.store, self.key)
        if loaded.vectors.nbytes * 2 <= self.keep_bytes:  # with the normalised copy
            _kept[where] = (files, loaded)
        return loaded

    def forget_exact_search(self) -> None:
        """Let the loaded set (kept between runs) go without its exact search, see
        :meth:`TrainingSet.forget_exact_search`."""
        if self._loaded is not None:
            self._loaded.forget_exact_search()

    def files(self) -> list[tuple[int, int]]:
        """(file id, live records) of the set's training data, as the loader's first
        call found them: one query per run (it counts every training record; a run asked
        it five times, a fifth of a no-op run at 20k training records)."""
        if self._files is None:
            self._files = self.catalog.queue.training_files(self.key)
        return self._files

    def count(self) -> int:
        """Live training records, from the manifest (no read of the data)."""
        if self._loaded is not None:
            return len(self._loaded)
        return sum(count for _, count in self.files())
