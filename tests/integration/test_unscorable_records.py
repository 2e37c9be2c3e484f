"""A production record stored with scores the labelling run cannot read (stored before
``/log`` checked scores) is skipped with a warning naming it; the set's run goes on.

Real PostgreSQL and a real local store; the record is committed through the group
committer directly, as ``/log`` no longer lets such scores in."""

from __future__ import annotations

import logging
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

ES = {"model": "unscorable", "version": "1"}
KEY = embedding_set_key(ES)


@pytest.fixture
def catalog(own_catalog: Catalog) -> Catalog:
    return own_catalog


def _batch(dataset: str, split: str, vectors: np.ndarray, *, labels: list[str | None],
           scores: list[str | None]) -> LogBatch:
    n = len(vectors)
    records = RecordBatch(
        ids=[f"{dataset}-{i}" for i in range(n)], embeddings=vectors.astype(np.float32),
        input_uris=[None] * n, inference_classes=["cat"] * n, label_classes=labels,
        scores_json=scores, tags=[[] for _ in range(n)], metadata_json=[None] * n,
        dataset=dataset, split=split,
    )
    return LogBatch(embedding_set=ES, embedding_set_key=KEY, dataset=dataset, split=split,
                    records=records)


def test_a_record_with_unreadable_scores_is_skipped_not_the_set(
    catalog: Catalog, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    rng = np.random.default_rng(0)
    store = FileStore(str(tmp_path / "store"))
    committer = GroupCommitter(catalog, store)
    training = rng.normal(size=(40, 4))
    committer.commit([_batch("train", "training", training,
                             labels=["cat", "dog"] * 20, scores=[None] * 40)])
    good = '{"cat": 0.6, "dog": 0.4}'
    committer.commit([_batch("prod", "production", rng.normal(size=(3, 4)), labels=[None] * 3,
                             scores=[good, '{"cat": "high"}', good])])

    job = LabellingJob(catalog, store, Settings(recommend_exact_knn_max=100_000), KEY)
    with caplog.at_level(logging.WARNING, logger="chroma.labelling"):
        result = recommend_one(job)

    assert result["scored"] == 2
    queued = {e.record_id for e in catalog.queue.page(KEY, limit=10)}
    assert queued == {"prod-0", "prod-2"}
    assert any("prod/prod-1" in r.getMessage() for r in caplog.records), caplog.text
