"""No lost wake-ups, on a real PostgreSQL (DESIGN.md section 12; issue 12 defect 1).

The trigger's part in the catalog, without real time: a change committed while an
operation runs (it may have read the change feed already) must cause another run, and
a dependency outage must put an operation back without spending its attempts
(issue 17), until the give-up bound. Also the watermarks the freshness check reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from chroma.catalog import Catalog, Database, Operations, apply_migrations
from chroma.catalog.changes import FeedLag
from chroma.ingest import GroupCommitter
from chroma.ingest.validation import LogBatch
from chroma.keys import embedding_set_key
from chroma.settings import Settings
from chroma.storage import RecordBatch, open_store

pytestmark = pytest.mark.integration


@pytest.fixture
def ops(database_url: str, uid: str) -> Iterator[tuple[Operations, str]]:
    apply_migrations(database_url)
    db = Database(database_url)
    db.open()
    key = f"es-{uid}"
    with db.transaction() as conn:  # the database is shared by the module: start empty
        conn.execute("UPDATE operations SET state = 'cancelled'"
                     " WHERE state IN ('queued', 'running')")
    Catalog(db).bind(key, {"test": uid}, 4, f"ds-{uid}", "production")
    yield Operations(db), key
    db.close()


def active(queue: Operations, kind: str, key: str) -> list[int]:
    return sorted(op.id for op in queue.list(kind=kind, embedding_set_key=key)
                  if op.state in ("queued", "running"))


def test_a_trigger_during_a_run_causes_another_run(ops) -> None:
    queue, key = ops
    first, _ = queue.enqueue("index", key, requested_by="trigger")
    running = queue.claim("w", ["index"], 30)
    assert running is not None and running.id == first.id
    # The run has read the feed; a commit lands and triggers again.
    joined, created = queue.enqueue("index", key, requested_by="trigger")
    assert not created and joined.id == first.id and joined.rerun_requested
    assert queue.claim("w2", ["index"], 30) is None  # never two runs of one set at once
    queue.finish(first.id, "w", "succeeded", result={})
    (second,) = active(queue, "index", key)
    assert second != first.id
    again = queue.claim("w", ["index"], 30)
    assert again is not None and again.id == second and not again.rerun_requested
    queue.finish(second, "w", "succeeded", result={})
    assert active(queue, "index", key) == []  # no mark, no further run


def test_a_trigger_joins_a_queued_operation_without_a_rerun(ops) -> None:
    queue, key = ops
    first, _ = queue.enqueue("recommend", key)
    joined, created = queue.enqueue("recommend", key)
    assert not created and joined.id == first.id and not joined.rerun_requested
    claimed = queue.claim("w", ["recommend"], 30)
    assert claimed is not None
    queue.finish(first.id, "w", "succeeded", result={})
    assert active(queue, "recommend", key) == []


@pytest.mark.parametrize("end", ["failed", "cancelled"])
def test_a_run_that_ends_otherwise_still_honours_the_mark(ops, end: str) -> None:
    queue, key = ops
    first, _ = queue.enqueue("index", key, max_attempts=1)
    assert queue.claim("w", ["index"], 30) is not None
    queue.enqueue("index", key)
    queue.finish(first.id, "w", end, error="boom" if end == "failed" else None)
    assert queue.get(first.id).state == end
    (rerun,) = active(queue, "index", key)
    assert queue.get(rerun).requested_by == f"rerun of #{first.id}"


def test_a_retried_run_covers_the_mark_itself(ops) -> None:
    queue, key = ops
    first, _ = queue.enqueue("index", key, max_attempts=3)
    assert queue.claim("w", ["index"], 30) is not None
    queue.enqueue("index", key)
    queue.finish(first.id, "w", "failed", error="boom")  # back to the queue: reads again
    assert active(queue, "index", key) == [first.id]
    assert not queue.get(first.id).rerun_requested


def test_an_outage_defers_without_spending_attempts_then_gives_up(ops) -> None:
    queue, key = ops
    first, _ = queue.enqueue("index", key, max_attempts=1)
    for retries in range(3):  # more deferrals than attempts: none is spent
        claimed = queue.claim("w", ["index"], 30)
        assert claimed is not None and claimed.attempts == 1
        assert claimed.outage_retries == retries
        verdict = queue.defer(first.id, "w", "Qdrant is unreachable", delay_s=0,
                              giveup_s=3600)
        assert verdict == "deferred"
        waiting = queue.get(first.id)
        assert waiting.state == "queued" and waiting.attempts == 0
        assert waiting.outage_since is not None
        assert waiting.message is not None
        assert waiting.message.startswith("waiting for the query engine: Qdrant is unreachable")
        assert "retry at" in waiting.message
    assert queue.claim("w", ["index"], 30) is not None
    queue.enqueue("index", key)  # a change during the last try
    assert queue.defer(first.id, "w", "still down", delay_s=0, giveup_s=0) == "gave-up"
    final = queue.get(first.id)
    assert final.state == "failed" and final.error is not None
    assert final.error.startswith("gave up: the query engine was unreachable")
    assert [r["outcome"] for r in queue.runs(first.id)] == ["unreachable"] * 3 + ["failed"]
    (rerun,) = active(queue, "index", key)  # the change is still covered by a later run
    assert rerun != first.id


def test_a_failure_after_an_outage_resets_the_outage(ops) -> None:
    queue, key = ops
    first, _ = queue.enqueue("index", key, max_attempts=2)
    assert queue.claim("w", ["index"], 30) is not None
    queue.defer(first.id, "w", "down", delay_s=0, giveup_s=3600)
    assert queue.claim("w", ["index"], 30) is not None
    queue.finish(first.id, "w", "failed", error="boom")
    retried = queue.get(first.id)
    assert retried.state == "queued" and retried.outage_since is None
    assert retried.outage_retries == 0


def test_wants_wakeup_only_after_a_success_or_nothing(ops) -> None:
    queue, key = ops
    assert queue.wants_wakeup("index", key)  # never ran
    op, _ = queue.enqueue("index", key)
    assert not queue.wants_wakeup("index", key)  # queued
    assert queue.claim("w", ["index"], 30) is not None
    assert not queue.wants_wakeup("index", key)  # running
    queue.finish(op.id, "w", "succeeded", result={})
    assert queue.wants_wakeup("index", key)
    failing, _ = queue.enqueue("index", key, max_attempts=1)
    assert queue.claim("w", ["index"], 30) is not None
    queue.finish(failing.id, "w", "failed", error="boom")
    assert not queue.wants_wakeup("index", key)  # gave up: waits for a change or a person


def test_feed_lag_counts_what_each_consumer_has_not_consumed(
        database_url: str, uid: str, tmp_path: Path) -> None:
    apply_migrations(database_url)
    settings = Settings(database_url=database_url, data_dir=tmp_path,
                        storage_url=str(tmp_path / "store"))
    db = Database(database_url)
    db.open()
    try:
        catalog = Catalog(db)
        es = {"test": f"lag-{uid}"}
        key = embedding_set_key(es)
        committer = GroupCommitter(catalog, open_store(settings))
        ids = [f"r{i}" for i in range(5)]
        n = len(ids)
        records = RecordBatch(
            ids=ids, embeddings=np.ones((n, 4), dtype=np.float32), input_uris=[None] * n,
            inference_classes=[None] * n, label_classes=[None] * n, scores_json=[None] * n,
            tags=[[] for _ in ids], metadata_json=[None] * n, dataset=f"p-{uid}",
            split="production")
        committer.commit([LogBatch(es, key, f"p-{uid}", "production", records)])
        changes = catalog.changes

        def lag() -> FeedLag:
            return next(x for x in changes.feed_lag() if x.key == key)

        head = changes.latest_seq(key)
        assert lag() == FeedLag(key, head, 0, 0, 5, 5)
        changes.record_index_state(key, collection=key, version=1, indexed_seq=head,
                                   indexed_count=5)
        catalog.delete_records(f"p-{uid}", ["r0"])
        after = lag()
        assert (after.head_seq, after.index_lag, after.queue_lag) == (head + 1, 1, 5)
        changes.mark_scored(key, after.head_seq)  # a run with nothing to score
        assert lag().queue_lag == 0
        changes.mark_scored(key, 1)  # never backwards
        assert lag().scored_seq == after.head_seq
    finally:
        db.close()
