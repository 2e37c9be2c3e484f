"""The small catalog queries every ``recommend`` run makes (the head of the set's change
feed, its training files) read only what they need, whatever the set's size: PostgreSQL's
own plans, on a real database, say no query scans the whole ``records`` table. Both
joined ``datasets`` to ``records``, and the planner then read every record of the set
(at 1M production records: 186 and 89 ms, several times a run, the first while holding
the lock the writers wait on).

Real PostgreSQL, records committed through the group committer, the tables analysed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.rows import tuple_row

from chroma.catalog import Catalog
from chroma.ingest import GroupCommitter, LogBatch
from chroma.keys import embedding_set_key
from chroma.storage import FileStore, RecordBatch

pytestmark = pytest.mark.integration

ES = {"model": "feed-plans", "version": "1"}
KEY = embedding_set_key(ES)
OTHER = {"model": "feed-plans-other", "version": "1"}
TRAINING, PRODUCTION = 2_000, 40_000


class Explaining(psycopg.Cursor):  # type: ignore[type-arg]
    """A cursor that asks PostgreSQL for the plan of each SELECT over ``records`` before
    running it as usual."""

    plans: list[tuple[str, dict[str, Any]]] = []

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = query if isinstance(query, str) else query.as_string(self.connection)
        if text.lstrip().upper().startswith("SELECT") and "records" in text:
            with self.connection.cursor(row_factory=tuple_row) as explain:
                row = explain.execute("EXPLAIN (FORMAT JSON) " + text, params).fetchone()
            assert row is not None
            Explaining.plans.append((text, row[0][0]["Plan"]))
        return super().execute(query, params, **kwargs)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _scans_of_records(plans: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [text for text, plan in plans for node in _nodes(plan)
            if node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "records"]


def _batch(es: dict[str, str], dataset: str, split: str, n: int) -> LogBatch:
    rng = np.random.default_rng(n)
    labels = ["a" if i % 2 else "b" for i in range(n)]
    records = RecordBatch(
        ids=[f"{dataset}-{i}" for i in range(n)],
        embeddings=rng.normal(size=(n, 4)).astype(np.float32), input_uris=[None] * n,
        inference_classes=labels, label_classes=labels if split == "training" else [None] * n,
        scores_json=[None] * n, tags=[[] for _ in range(n)], metadata_json=[None] * n,
        dataset=dataset, split=split)
    return LogBatch(embedding_set=es, embedding_set_key=embedding_set_key(es),
                    dataset=dataset, split=split, records=records)


@pytest.fixture
def catalog(own_catalog: Catalog, tmp_path: Path) -> Iterator[Catalog]:
    """A set of 2k training and 40k production records (after another set's few), its
    tables analysed, and every SELECT over ``records`` explained."""
    committer = GroupCommitter(own_catalog, FileStore(str(tmp_path / "store")))
    committer.commit([_batch(OTHER, "other", "production", 500)])
    committer.commit([_batch(ES, "train", "training", TRAINING)])
    committer.commit([_batch(ES, "prod", "production", PRODUCTION)])
    with own_catalog.db.transaction() as conn:
        conn.execute("ANALYZE")
    transaction = own_catalog.db.transaction

    @contextmanager
    def explained(**kwargs: Any) -> Iterator[psycopg.Connection[Any]]:
        with transaction(**kwargs) as conn:
            conn.cursor_factory = Explaining
            try:
                yield conn
            finally:
                conn.cursor_factory = psycopg.Cursor
    own_catalog.db.transaction = explained  # type: ignore[method-assign]
    Explaining.plans = []
    yield own_catalog
    own_catalog.db.transaction = transaction  # type: ignore[method-assign]


def _truth(catalog: Catalog, query: str) -> Any:
    with catalog.db.transaction() as conn:
        conn.cursor_factory = psycopg.Cursor
        return conn.execute(query, (KEY,)).fetchall()


def test_the_head_of_a_sets_feed_is_found_without_reading_all_its_records(
    catalog: Catalog,
) -> None:
    head = catalog.changes.latest_seq(KEY)

    [(expected,)] = _truth(catalog, "SELECT max(r.change_seq) FROM records r JOIN datasets d"
                                    " ON d.id = r.dataset_id WHERE d.embedding_set_key = %s")
    assert head == expected
    assert Explaining.plans, "latest_seq asked nothing of records"
    assert _scans_of_records(Explaining.plans) == []
    assert catalog.changes.latest_seq(embedding_set_key({"model": "no such set"})) == 0


def test_the_training_files_are_counted_from_the_training_records_alone(
    catalog: Catalog,
) -> None:
    files = catalog.queue.training_files(KEY)

    expected = _truth(catalog, "SELECT r.file_id, count(*) FROM records r JOIN datasets d"
                               " ON d.id = r.dataset_id WHERE d.embedding_set_key = %s"
                               " AND d.split = 'training' GROUP BY r.file_id")
    assert sorted(files) == sorted((int(f), int(n)) for f, n in expected)
    assert sum(n for _, n in files) == TRAINING
    assert _scans_of_records(Explaining.plans) == []


def test_the_status_finds_each_sets_head_without_reading_all_its_records(
    catalog: Catalog,
) -> None:
    """``/api/v1/status`` (polled by dashboards and the freshness benchmark) reads the
    head of every set's feed, and what the index and the queue lag behind it."""
    head = catalog.changes.latest_seq(KEY)
    catalog.changes.record_index_state(KEY, collection="c", version=1, indexed_seq=head - 10,
                                       indexed_count=PRODUCTION + TRAINING)
    catalog.changes.mark_scored(KEY, head - 5)
    Explaining.plans = []

    freshness = {row["embedding_set_key"]: row for row in catalog.index_freshness()}
    lags = {lag.key: lag for lag in catalog.changes.feed_lag()}

    assert freshness[KEY]["latest_seq"] == lags[KEY].head_seq == head
    assert (lags[KEY].index_lag, lags[KEY].queue_lag) == (10, 5)
    other = embedding_set_key(OTHER)
    assert freshness[other]["latest_seq"] == lags[other].head_seq < head
    assert _scans_of_records(Explaining.plans) == []
