"""A loaded training set keeps one string per repeated value (dataset, classes).

The recommender keeps a set's ``TrainingSet`` between runs; as the catalog rows held
them, every row had strings of its own for values that repeat (~11 MiB of the worker's
Python heap for 100k records, bench/footprint.py). Real PostgreSQL and a real store."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chroma.catalog import Catalog
from chroma.ingest import GroupCommitter, LogBatch
from chroma.keys import embedding_set_key
from chroma.labelling.training import TrainingSet
from chroma.storage import FileStore, RecordBatch

pytestmark = pytest.mark.integration

ES = {"model": "training-memory", "version": "1"}
KEY = embedding_set_key(ES)


def _batch(n: int) -> LogBatch:
    classes = [f"class-{i % 3}" for i in range(n)]
    records = RecordBatch(
        ids=[f"train-{i}" for i in range(n)],
        embeddings=np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32),
        input_uris=[None] * n, inference_classes=classes, label_classes=classes,
        scores_json=[None] * n, tags=[[] for _ in range(n)], metadata_json=[None] * n,
        dataset="train", split="training",
    )
    return LogBatch(embedding_set=ES, embedding_set_key=KEY, dataset="train",
                    split="training", records=records)


def test_a_loaded_training_set_keeps_one_string_per_repeated_value(
    own_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = FileStore(str(tmp_path / "store"))
    GroupCommitter(own_catalog, store).commit([_batch(300)])
    rows: list[Any] = []
    real = own_catalog.changes.iter_records_since

    def seen(*args: Any, **kwargs: Any) -> Iterator[list[Any]]:
        for page in real(*args, **kwargs):
            rows.extend(page)  # kept alive here, so identities stay comparable
            yield page

    monkeypatch.setattr(own_catalog.changes, "iter_records_since", seen)
    training = TrainingSet.load(own_catalog, store, KEY)

    assert len(rows) == len(training) == 300
    by_id = {row.record_id: row for row in rows}
    for (dataset, record_id), label, predicted in zip(
            training.refs, training.labels, training.predicted, strict=True):
        row = by_id[record_id]
        assert (dataset, label, predicted) == (row.dataset, row.label_class,
                                               row.inference_class)
        for text in (dataset, label, predicted):  # repeated values: one string each
            assert text is sys.intern(text)
    assert len({id(label) for label in training.labels}) == 3
