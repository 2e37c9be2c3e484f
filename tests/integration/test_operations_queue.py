"""The operations queue on a real PostgreSQL: coalescing, leases, ownership, retries."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from chroma.catalog import Catalog, Database, Operations, apply_migrations
from chroma.errors import Conflict, InvalidInput, NotFound

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


def test_duplicates_of_an_active_operation_coalesce(ops) -> None:
    queue, key = ops
    first, created = queue.enqueue("compact", key)
    again, created_again = queue.enqueue("compact", key)
    assert created and not created_again and again.id == first.id
    other, created_other = queue.enqueue("expire", key)
    assert created_other and other.id != first.id


def test_unknown_kind_and_set_are_refused(ops) -> None:
    queue, _ = ops
    with pytest.raises(InvalidInput):
        queue.enqueue("dance", None)
    with pytest.raises(NotFound):
        queue.enqueue("compact", "no-such-set")


def test_a_claimed_operation_is_not_claimed_twice_until_its_lease_expires(ops) -> None:
    queue, key = ops
    op, _ = queue.enqueue("reindex", key)
    first = queue.claim("w1", ["reindex"], lease_s=1.0)
    assert first is not None and first.id == op.id and first.attempts == 1
    assert queue.claim("w2", ["reindex"], lease_s=1.0) is None
    time.sleep(1.2)
    second = queue.claim("w2", ["reindex"], lease_s=30)
    assert second is not None and second.id == op.id and second.attempts == 2
    # The first worker lost its lease: it can neither heartbeat nor finish.
    assert queue.heartbeat(op.id, "w1", 30) == "lost"
    assert not queue.finish(op.id, "w1", "succeeded", result={"by": "w1"})
    assert queue.finish(op.id, "w2", "succeeded", result={"by": "w2"})
    done = queue.get(op.id)
    assert done.state == "succeeded" and done.result == {"by": "w2"}
    assert [r["outcome"] for r in queue.runs(op.id)] == ["lost", "succeeded"]


def test_failures_are_retried_with_backoff_then_given_up(ops) -> None:
    queue, key = ops
    op, _ = queue.enqueue("fit-mhb", key, max_attempts=2)
    claimed = queue.claim("w", ["fit-mhb"], 30)
    assert claimed is not None
    queue.finish(op.id, "w", "failed", error="boom")
    retried = queue.get(op.id)
    assert retried.state == "queued" and retried.retry_at is not None
    assert queue.claim("w", ["fit-mhb"], 30) is None  # still backing off (2 s)
    time.sleep(2.1)
    assert queue.claim("w", ["fit-mhb"], 30) is not None
    queue.finish(op.id, "w", "failed", error="boom again")
    final = queue.get(op.id)
    assert final.state == "failed" and final.error == "boom again" and final.attempts == 2


def test_a_permanent_failure_is_not_retried(ops) -> None:
    queue, key = ops
    op, _ = queue.enqueue("recommend", key)
    queue.claim("w", ["recommend"], 30)
    queue.finish(op.id, "w", "failed", error="no handler", retryable=False)
    assert queue.get(op.id).state == "failed"


def test_cancel_queued_at_once_running_at_next_heartbeat(ops) -> None:
    queue, key = ops
    queued, _ = queue.enqueue("compact", key)
    assert queue.cancel(queued.id).state == "cancelled"
    running, _ = queue.enqueue("expire", key)
    queue.claim("w", ["expire"], 30)
    assert queue.cancel(running.id).state == "running"
    assert queue.heartbeat(running.id, "w", 30) == "cancel"
    queue.finish(running.id, "w", "cancelled")
    assert queue.get(running.id).state == "cancelled"
    with pytest.raises(Conflict):
        done, _ = queue.enqueue("index", key)
        queue.claim("w", ["index"], 30)
        queue.finish(done.id, "w", "succeeded")
        queue.cancel(done.id)


def test_release_gives_the_operation_back_without_counting_an_attempt(ops) -> None:
    queue, key = ops
    op, _ = queue.enqueue("sleep", key)
    queue.claim("w", ["sleep"], 30)
    assert queue.release(op.id, "w")
    back = queue.get(op.id)
    assert back.state == "queued" and back.attempts == 0
    assert queue.claim("w2", ["sleep"], 30).id == op.id
