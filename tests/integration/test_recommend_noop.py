"""A ``recommend`` with nothing new to score ends at once: it reads no training data and
waits for no index (a no-op run once took 33 s beside an index build), yet it still
scores what is new, and a full refresh still rescores everything.

Real PostgreSQL and a real local store; records committed through the group committer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chroma.catalog import Catalog
from chroma.ingest import GroupCommitter, LogBatch
from chroma.keys import embedding_set_key
from chroma.labelling import training as training_module
from chroma.labelling.runs import LabellingJob, recommend_one
from chroma.settings import Settings
from chroma.storage import FileStore, RecordBatch

pytestmark = pytest.mark.integration

ES = {"model": "noop-recommend", "version": "1"}
KEY = embedding_set_key(ES)


@pytest.fixture
def catalog(own_catalog: Catalog) -> Catalog:
    return own_catalog


def _batch(dataset: str, split: str, vectors: np.ndarray, first: int) -> LogBatch:
    n = len(vectors)
    classes = ["cat", "dog"] * (n // 2) + ["cat"] * (n % 2)
    records = RecordBatch(
        ids=[f"{dataset}-{first + i}" for i in range(n)],
        embeddings=vectors.astype(np.float32), input_uris=[None] * n,
        inference_classes=classes,
        label_classes=classes if split == "training" else [None] * n,
        scores_json=[None] * n, tags=[[] for _ in range(n)], metadata_json=[None] * n,
        dataset=dataset, split=split,
    )
    return LogBatch(embedding_set=ES, embedding_set_key=KEY, dataset=dataset, split=split,
                    records=records)


def test_a_run_with_nothing_new_reads_nothing_and_new_records_are_still_scored(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    store = FileStore(str(tmp_path / "store"))
    committer = GroupCommitter(catalog, store)
    committer.commit([_batch("train", "training", rng.normal(size=(60, 4)), 0)])
    committer.commit([_batch("prod", "production", rng.normal(size=(5, 4)), 0)])
    settings = Settings(recommend_exact_knn_max=100_000)

    first = recommend_one(LabellingJob(catalog, store, settings, KEY))
    assert first["scored"] == 5 and first["full_refresh"]

    loads: list[str] = []
    real_load = training_module.TrainingSet.load.__func__  # type: ignore[attr-defined]

    def counted(cls: type, *args: object) -> object:
        loads.append("training read")
        return real_load(cls, *args)

    monkeypatch.setattr(training_module.TrainingSet, "load", classmethod(counted))
    again = recommend_one(LabellingJob(catalog, store, settings, KEY))
    assert again["scored"] == 0 and "skipped" in again
    assert again["knn"] == first["knn"] == "exact"  # reported as a run that scored would
    assert again["mhb_version"] == first["mhb_version"]
    assert loads == []  # nothing new: the training set was not read

    committer.commit([_batch("prod", "production", rng.normal(size=(2, 4)), 5)])
    newer = recommend_one(LabellingJob(catalog, store, settings, KEY))
    assert newer["scored"] == 2 and not newer["full_refresh"]
    assert {e.record_id for e in catalog.queue.page(KEY, limit=10)} == {
        f"prod-{i}" for i in range(7)}

    full = recommend_one(LabellingJob(catalog, store, settings, KEY), full=True)
    assert full["scored"] == 7 and full["full_refresh"]
    assert loads == []  # the training set read by the first run is kept while unchanged

    committer.commit([_batch("train", "training", rng.normal(size=(4, 4)), 60)])
    retrained = recommend_one(LabellingJob(catalog, store, settings, KEY))
    assert retrained["full_refresh"] and retrained["scored"] == 7
    assert loads == ["training read"]  # new training data: read again, once


def test_without_the_training_cache_every_run_with_work_reads_the_training_set(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(2)
    store = FileStore(str(tmp_path / "store"))
    committer = GroupCommitter(catalog, store)
    committer.commit([_batch("train", "training", rng.normal(size=(60, 4)), 0)])
    committer.commit([_batch("prod", "production", rng.normal(size=(3, 4)), 0)])
    settings = Settings(recommend_exact_knn_max=100_000, recommend_training_cache_bytes=0)
    recommend_one(LabellingJob(catalog, store, settings, KEY))
    loads: list[str] = []
    real_load = training_module.TrainingSet.load.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(training_module.TrainingSet, "load", classmethod(
        lambda cls, *args: loads.append("read") or real_load(cls, *args)))
    committer.commit([_batch("prod", "production", rng.normal(size=(1, 4)), 3)])
    assert recommend_one(LabellingJob(catalog, store, settings, KEY))["scored"] == 1
    assert loads == ["read"]


def test_changed_mhb_limits_make_a_run_without_new_records_rescore(
    catalog: Catalog, tmp_path: Path,
) -> None:
    rng = np.random.default_rng(1)
    store = FileStore(str(tmp_path / "store"))
    committer = GroupCommitter(catalog, store)
    committer.commit([_batch("train", "training", rng.normal(size=(60, 4)), 0)])
    committer.commit([_batch("prod", "production", rng.normal(size=(3, 4)), 0)])
    recommend_one(LabellingJob(catalog, store, Settings(recommend_exact_knn_max=100_000), KEY))

    refit = Settings(recommend_exact_knn_max=100_000, mhb_class_rank=2)
    result = recommend_one(LabellingJob(catalog, store, refit, KEY))
    assert result["scored"] == 3 and result["full_refresh"]
