"""A full ``recommend`` with the approximate (IVF) kNN fills the queue like the exact one.

Real PostgreSQL and a real local store; records committed through the group committer;
the only difference between the two runs is ``recommend_approximate_knn_min`` of the job's
settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chroma.catalog import Catalog
from chroma.ingest import GroupCommitter, LogBatch
from chroma.keys import embedding_set_key
from chroma.labelling.runs import LabellingJob, recommend_one
from chroma.settings import Settings
from chroma.storage import FileStore, RecordBatch

pytestmark = pytest.mark.integration

ES = {"model": "approximate-refresh", "version": "1"}
KEY = embedding_set_key(ES)
DIM = 16


def _batch(dataset: str, split: str, labels: np.ndarray, rng: np.random.Generator
           ) -> LogBatch:
    """Clusters on 3-d subspaces; production holds two classes never trained."""
    shape = np.random.default_rng(9)
    centres, bases = shape.normal(size=(10, DIM)) * 4, shape.normal(size=(10, 3, DIM))
    spread = np.einsum("nk,nkd->nd", rng.normal(size=(len(labels), 3)), bases[labels])
    vectors = (centres[labels] + spread + 0.05 * rng.normal(size=(len(labels), DIM)))
    n, names = len(labels), [f"class-{c}" for c in labels]
    records = RecordBatch(
        ids=[f"{dataset}-{i}" for i in range(n)], embeddings=vectors.astype(np.float32),
        input_uris=[None] * n, inference_classes=[f"class-{c % 8}" for c in labels],
        label_classes=names if split == "training" else [None] * n,
        scores_json=[None] * n, tags=[[] for _ in range(n)], metadata_json=[None] * n,
        dataset=dataset, split=split)
    return LogBatch(embedding_set=ES, embedding_set_key=KEY, dataset=dataset, split=split,
                    records=records)


def _queue(catalog: Catalog) -> dict[str, tuple[float, float]]:
    """record id -> (score, raw kNN distance) of the whole queue."""
    entries = catalog.queue.page(KEY, limit=10_000)
    return {e.record_id: (e.score, e.raw_signals["knn_distance"]) for e in entries}


def test_the_approximate_knn_ranks_the_queue_like_the_exact_one(
    own_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    store = FileStore(str(tmp_path / "store"))
    committer = GroupCommitter(own_catalog, store)
    committer.commit([_batch("train", "training", rng.integers(0, 8, 4_000), rng)])
    committer.commit([_batch("prod", "production", rng.integers(0, 10, 1_000), rng)])
    # Each run builds its search; only the job's settings differ.
    exact_settings = Settings(recommend_training_cache_bytes=0,
                              recommend_approximate_knn_min=0)
    approximate_settings = Settings(recommend_training_cache_bytes=0,
                                    recommend_approximate_knn_min=1000)

    exact_run = recommend_one(LabellingJob(own_catalog, store, exact_settings, KEY),
                              full=True)
    exact = _queue(own_catalog)
    job = LabellingJob(own_catalog, store, approximate_settings, KEY)
    approximate_run = recommend_one(job, full=True)
    approximate = _queue(own_catalog)

    assert (exact_run["knn"], approximate_run["knn"]) == ("exact", "approximate")
    assert exact_run["scored"] == approximate_run["scored"] == 1_000
    assert set(exact) == set(approximate)
    ids = sorted(exact)
    knn_exact = np.array([exact[i][1] for i in ids])
    knn_approximate = np.array([approximate[i][1] for i in ids])
    assert (knn_approximate >= knn_exact - 1e-5).all()  # never nearer than the nearest
    assert np.median(knn_approximate / knn_exact) < 1.01
    top = 100
    best_exact = set(sorted(ids, key=lambda i: -exact[i][0])[:top])
    best_approximate = set(sorted(ids, key=lambda i: -approximate[i][0])[:top])
    assert len(best_exact & best_approximate) >= 0.9 * top


@pytest.mark.parametrize(("environment", "job_setting", "knn"),
                         [("0", 1000, "approximate"), ("1000", 0, "exact")])
def test_the_jobs_settings_choose_the_knn_not_the_environment(
    own_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    environment: str, job_setting: int, knn: str,
) -> None:
    """A worker started with one ``CHROMA_RECOMMEND_APPROXIMATE_KNN_MIN`` runs jobs with
    the settings it was given (the switch read the environment once)."""
    rng = np.random.default_rng(1)
    store = FileStore(str(tmp_path / "store"))
    committer = GroupCommitter(own_catalog, store)
    committer.commit([_batch("train", "training", rng.integers(0, 8, 1_200), rng)])
    committer.commit([_batch("prod", "production", rng.integers(0, 10, 50), rng)])
    monkeypatch.setenv("CHROMA_RECOMMEND_APPROXIMATE_KNN_MIN", environment)
    settings = Settings(recommend_training_cache_bytes=0,
                        recommend_approximate_knn_min=job_setting)
    assert recommend_one(LabellingJob(own_catalog, store, settings, KEY))["knn"] == knn
