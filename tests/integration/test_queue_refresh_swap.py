"""A full refresh writes the set's new queue beside the old one and swaps it in at its
end (``Recommendations.begin_refresh`` / ``stage`` / ``finish_refresh``). The queue after
it must be exactly the one the per-page upserts gave (``upsert`` of every page, then
``remove`` of the deleted records): the same rows, scores, signals and labelled flags,
other sets' entries and entries the run did not rescore kept; the table keeps its
indexes, primary and foreign keys; and readers see the old queue until the swap.

Real PostgreSQL; the expectation is the upsert path run on a copy of the same queue."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pytest

from chroma.catalog import Catalog, ScoredPage
from chroma.labelling import runs
from chroma.labelling.runs import LabellingJob, recommend_one
from chroma.storage import FileStore

from .test_recommend_incremental import KEY, Logger, scored_in_pages

pytestmark = pytest.mark.integration

OTHER = "another-set"


@pytest.fixture
def catalog(own_catalog: Catalog) -> Catalog:
    return own_catalog


def _page(dataset: str, ids: list[str], seed: int, labelled: set[str] = frozenset()
          ) -> ScoredPage:
    """Scored records with varied scores, signals (some not finite), tags and times."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    records = pa.table({
        "dataset": [dataset] * n, "record_id": ids,
        "input_uri": [None if i % 4 == 0 else f"s3://in/{r}" for i, r in enumerate(ids)],
        "inference_class": [("cat", "dog", None)[i % 3] for i in range(n)],
        "tags": ["{}" if i % 2 else '{night,"q\\"uote"}' for i in range(n)],
        "logged_at": [f"2026-11-{1 + i % 27:02d} 0{i % 10}:00:00+00" for i in range(n)],
        "labelled": [r in labelled for r in ids],
    })
    knn = rng.random(n)
    knn[::5] = np.nan
    score = rng.random(n)
    return ScoredPage(records, score=score, percentile=score * 100, label=score > 0.7,
                      signals={"knn_distance": knn, "mhb_predicted": rng.random(n)},
                      raw_signals={"knn_distance": knn * 3, "mhb_predicted": rng.random(n)})


def _table(catalog: Catalog) -> list[tuple[Any, ...]]:
    """Every row of the queue table, every column but ``scored_at`` (a clock)."""
    with catalog.db.transaction() as conn:
        return conn.execute(
            "SELECT embedding_set_key, dataset_id, record_id, score, percentile, verdict,"
            " signals, raw_signals, input_uri, inference_class, tags, logged_at, labelled,"
            " mhb_version FROM recommendations ORDER BY dataset_id, record_id").fetchall()


def _schema(catalog: Catalog) -> tuple[list[Any], list[Any], list[Any]]:
    with catalog.db.transaction() as conn:
        indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes"
                               " WHERE tablename = 'recommendations' ORDER BY 1").fetchall()
        constraints = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'recommendations'::regclass ORDER BY 1").fetchall()
        tables = conn.execute("SELECT tablename FROM pg_tables"
                              " WHERE tablename LIKE 'recommendations%' ORDER BY 1").fetchall()
    return indexes, constraints, tables


def test_the_swapped_queue_is_the_upserted_one(catalog: Catalog, tmp_path: Path) -> None:
    logger = Logger(catalog, FileStore(str(tmp_path / "store")))
    logger.log("prod", "production", ["p-0"])  # the datasets the queue refers to
    logger.log("other", "production", ["o-0"])
    queue = catalog.queue
    # The old queue: two sets, records marked labelled through the API.
    queue.upsert(KEY, _page("prod", [f"p-{i}" for i in range(30)], 1), 1)
    queue.upsert(OTHER, _page("other", [f"o-{i}" for i in range(10)], 2), 4)
    assert sorted(queue.mark_labelled("prod", ["p-3", "p-4", "p-25"])) == [
        "p-25", "p-3", "p-4"]
    schema = _schema(catalog)
    with catalog.db.transaction() as conn:
        conn.execute("CREATE TABLE old_queue AS SELECT * FROM recommendations")
    # The refresh: p-0..19 rescored (p-3 logged with a label now too), p-20..29 not
    # rescored (skipped: kept as they were), p-30..39 new, two records deleted.
    refreshed = [f"p-{i}" for i in range(20)] + [f"p-{i}" for i in range(30, 40)]
    pages = [_page("prod", refreshed[i:i + 7], 10 + i, labelled={"p-3", "p-31"})
             for i in range(0, len(refreshed), 7)]
    deleted = [("prod", "p-5"), ("prod", "p-22"), ("prod", "p-99")]

    for page in pages:  # the old way
        queue.upsert(KEY, page, 2, count=False)
    queue.remove(KEY, deleted)
    want = _table(catalog)
    with catalog.db.transaction() as conn:
        conn.execute("TRUNCATE recommendations")
        conn.execute("INSERT INTO recommendations SELECT * FROM old_queue")
        conn.execute("DROP TABLE old_queue")
    before = queue.page(KEY, limit=1000)

    queue.begin_refresh(KEY)
    for page in pages:
        queue.stage(KEY, page, 2)
        assert queue.page(KEY, limit=1000) == before  # readers: the old queue
    queue.finish_refresh(KEY, deleted)
    got = _table(catalog)

    assert got == want
    labelled = {row[2] for row in got if row[12]}
    assert labelled == {"p-3", "p-4", "p-25", "p-31"}  # marks kept, labels logged
    assert sum(row[0] == OTHER for row in got) == 10
    assert {"p-5", "p-22"}.isdisjoint(row[2] for row in got)
    assert len(got) == 40 + 10 - 2
    assert _schema(catalog) == schema  # same indexes and keys, no table left behind
    assert [e.record_id for e in queue.page(KEY, limit=1000)] == [
        row[2] for row in sorted((r for r in got if r[0] == KEY and not r[12]),
                                 key=lambda r: (r[3], r[1], r[2]), reverse=True)]


def test_readers_see_the_old_queue_while_a_full_refresh_runs(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pages written into the live queue one by one (before the swap) showed readers a
    queue half old, half new for the whole run: here a reader at the fourth page sees
    none of the records logged since the last run, then all of them after it."""
    logger, store, settings = scored_in_pages(catalog, tmp_path, monkeypatch)
    before = [(e.record_id, e.score) for e in catalog.queue.page(KEY, limit=1000)]
    logger.log("prod", "production", [f"p-{i}" for i in range(10, 40)])
    score_page = runs._score_page
    seen: list[list[tuple[str, float]]] = []

    def reading(*args: Any) -> Any:
        seen.append([(e.record_id, e.score) for e in catalog.queue.page(KEY, limit=1000)])
        return score_page(*args)

    monkeypatch.setattr(runs, "_score_page", reading)
    assert recommend_one(LabellingJob(catalog, store, settings, KEY), full=True)["scored"] == 40
    assert len(seen) == 6 and seen[3] == before
    assert len(catalog.queue.page(KEY, limit=1000)) == 40


def test_the_swap_returns_the_set_s_entries_and_a_run_saves_them_uncounted(
    catalog: Catalog, tmp_path: Path,
) -> None:
    """``finish_refresh`` returns the set's entries in the new queue (labelled ones
    included, other sets' not, deleted ones gone): the count a run saves instead of
    counting the queue again after the swap."""
    logger = Logger(catalog, FileStore(str(tmp_path / "store")))
    logger.log("prod", "production", ["p-0"])
    logger.log("other", "production", ["o-0"])
    queue = catalog.queue
    queue.upsert(KEY, _page("prod", [f"p-{i}" for i in range(12)], 1), 1)
    queue.upsert(OTHER, _page("other", [f"o-{i}" for i in range(5)], 2), 1)
    queue.mark_labelled("prod", ["p-2", "p-11"])
    queue.begin_refresh(KEY)
    queue.stage(KEY, _page("prod", [f"p-{i}" for i in range(8)] + ["p-20", "p-21"], 3), 2)
    count = queue.finish_refresh(KEY, [("prod", "p-1"), ("prod", "p-10")])
    with catalog.db.transaction() as conn:
        (want,) = conn.execute("SELECT count(*) FROM recommendations"
                               " WHERE embedding_set_key = %s", (KEY,)).fetchone()
    assert count == want == 12 + 2 - 2  # p-8..11 kept, p-20/21 new, p-1/10 deleted
    queue.save_state(KEY, mhb_version=2, index_version=None, reference=None,
                     scored_seq=1, count=count)
    state = queue.state(KEY)
    assert state is not None and state.scored_count == 12


def test_a_mark_made_while_the_swap_holds_the_queue_lands_in_the_new_queue(
    catalog: Catalog, tmp_path: Path,
) -> None:
    """A labeller marking a record while ``finish_refresh`` runs waits for the swap,
    then marks it in the new queue: not lost with the old table. Deterministic: a
    reader holds the old table until both the swap (at its DROP) and the mark wait."""
    logger = Logger(catalog, FileStore(str(tmp_path / "store")))
    logger.log("prod", "production", ["p-0"])
    queue = catalog.queue
    queue.upsert(KEY, _page("prod", [f"p-{i}" for i in range(10)], 1), 1)
    queue.begin_refresh(KEY)
    queue.stage(KEY, _page("prod", [f"p-{i}" for i in range(10)], 2), 2)
    marked: list[list[str]] = []
    with psycopg.connect(catalog.db.dsn, autocommit=False) as reader:
        reader.execute("SELECT count(*) FROM recommendations").fetchone()  # holds it
        with ThreadPoolExecutor(2) as pool:
            swap = pool.submit(queue.finish_refresh, KEY, [])
            _wait_for_waiters(catalog, 1)  # the swap, at its DROP TABLE
            mark = pool.submit(lambda: marked.append(queue.mark_labelled("prod", ["p-4"])))
            _wait_for_waiters(catalog, 2)  # and the mark, behind the swap
            reader.rollback()
            swap.result(timeout=60)
            mark.result(timeout=60)
    assert marked == [["p-4"]]
    labelled = {row[2] for row in _table(catalog) if row[12]}
    assert labelled == {"p-4"}
    assert "p-4" not in {e.record_id for e in queue.page(KEY, limit=100)}


def _wait_for_waiters(catalog: Catalog, n: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with catalog.db.transaction() as conn:
            (waiting,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()").fetchone()
        if waiting >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{n} sessions never waited for a lock")
