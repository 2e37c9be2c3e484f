"""What the worker records for each way an operation can end, without PostgreSQL or sleeps.

The queue is :class:`QueueDouble`, an in-memory test double of our own ``Operations``
repository interface (the calls the worker makes: claim, heartbeat, finish, defer,
release, component state). It records every call and models only what the worker
depends on: the lease owner, attempts, the retry rule of ``Operations.finish`` (a
retryable failure is queued again after :func:`retry_delay_s` until ``max_attempts``)
and the outage rule of ``Operations.defer`` (queued again after the given delay, no
attempt spent, until the outage lasted ``giveup_s``). The SQL itself is tested against a
real PostgreSQL in tests/integration/test_operations_queue.py and test_wakeups.py.

Handlers come from a table injected through ``Worker(lookup=...)`` and time from a
:class:`FakeClock` through ``Worker(clock=...)``: a lease heartbeat fires exactly when a
test advances the clock past its interval.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from chroma.catalog.operations import Operation, outage_retry_delay_s, retry_delay_s
from chroma.control.worker import KindLookup, Worker, WorkerServices
from chroma.errors import InvalidInput, Unavailable, Unreachable
from chroma.operations.context import OperationContext
from chroma.operations.kinds import Handler, OperationKind, OperationUnavailable
from chroma.operations.params import NoParams
from chroma.settings import Settings

from .fake_clock import FakeClock

LEASE_S = 15.0
HEARTBEAT_S = 2.0  # the lease heartbeat interval: min(LEASE_S / 3, HEARTBEAT_S)
WAIT_S = 5.0  # a bound on waiting for another thread, never a pause


class QueueDouble:
    """In-memory stand-in for :class:`chroma.catalog.Operations`; records every call."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.ops: dict[int, Operation] = {}
        self.retry_at: dict[int, float] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.verdict = "ok"  # what heartbeat answers: ok | cancel | lost
        self.claim_error: Exception | None = None
        self.claimed = threading.Semaphore(0)
        self.beats = threading.Semaphore(0)
        self.outage_since: dict[int, float] = {}

    def add(self, kind: str, *, max_attempts: int = 3) -> int:
        op_id = len(self.ops) + 1
        self.ops[op_id] = Operation(
            id=op_id, kind=kind, embedding_set_key=None, params={}, state="queued",
            progress=0.0, message=None, attempts=0, max_attempts=max_attempts,
            requested_by="test", cancel_requested=False, lease_owner=None,
            lease_expires_at=None, retry_at=None, created_at=datetime.now(UTC),
            started_at=None, finished_at=None, result=None, error=None)
        return op_id

    def claim(self, owner: str, kinds: Sequence[str], lease_s: float) -> Operation | None:
        self.calls.append(("claim", owner, tuple(kinds), lease_s))
        self.claimed.release()
        if self.claim_error is not None:
            error, self.claim_error = self.claim_error, None
            raise error
        for op in self.ops.values():
            due = self.retry_at.get(op.id, float("-inf")) <= self.clock.monotonic()
            if op.state == "queued" and op.kind in kinds and due:
                claimed = replace(op, state="running", lease_owner=owner,
                                  attempts=op.attempts + 1)
                self.ops[op.id] = claimed
                return claimed
        return None

    def heartbeat(self, op_id: int, owner: str, lease_s: float,
                  progress: float | None = None, message: str | None = None) -> str:
        self.calls.append(("heartbeat", op_id, owner, lease_s, progress, message))
        self.beats.release()
        return self.verdict

    def release(self, op_id: int, owner: str) -> bool:
        self.calls.append(("release", op_id, owner))
        op = self.ops[op_id]
        self.ops[op_id] = replace(op, state="queued", lease_owner=None,
                                  attempts=max(op.attempts - 1, 0))
        return True

    def finish(self, op_id: int, owner: str, state: str, *,
               result: dict[str, Any] | None = None, error: str | None = None,
               retryable: bool = True) -> bool:
        self.calls.append(("finish", op_id, owner, state, result, error, retryable))
        op = self.ops[op_id]
        if op.state != "running" or op.lease_owner != owner:
            return False
        retry = retryable and state == "failed" and op.attempts < op.max_attempts
        if retry:
            self.retry_at[op_id] = self.clock.monotonic() + retry_delay_s(op.attempts)
        self.ops[op_id] = replace(op, state="queued" if retry else state, lease_owner=None,
                                  result=result, error=error)
        return True

    def defer(self, op_id: int, owner: str, reason: str, *, delay_s: float,
              giveup_s: float) -> str:
        self.calls.append(("defer", op_id, owner, reason, delay_s, giveup_s))
        op = self.ops[op_id]
        if op.state != "running" or op.lease_owner != owner:
            return "lost"
        now = self.clock.monotonic()
        since = self.outage_since.setdefault(op_id, now)
        if now - since >= giveup_s and op.outage_retries > 0:
            self.ops[op_id] = replace(op, state="failed", lease_owner=None, error=reason)
            return "gave-up"
        self.retry_at[op_id] = now + delay_s
        self.ops[op_id] = replace(op, state="queued", lease_owner=None,
                                  attempts=max(op.attempts - 1, 0),
                                  outage_retries=op.outage_retries + 1,
                                  message=f"waiting for the query engine: {reason}")
        return "deferred"

    def component_state(self, name: str, kind: str, state: str, **fields: Any) -> None:
        self.calls.append(("component_state", name, kind, state))

    def component_heartbeat(self, name: str, kind: str, **fields: Any) -> None:
        self.calls.append(("component_heartbeat", name, kind))

    def named(self, call: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == call]


def table(handlers: dict[str, Handler]) -> KindLookup:
    """A handler table in place of :func:`chroma.operations.kinds.kind_of`."""

    def lookup(name: str) -> OperationKind:
        if name not in handlers:
            raise OperationUnavailable(f"unknown operation kind {name!r}")
        return OperationKind(name, handlers[name], "test", NoParams, False, "test kind")

    return lookup


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock: FakeClock) -> QueueDouble:
    return QueueDouble(clock)


def make_worker(queue: QueueDouble, clock: FakeClock, handlers: dict[str, Handler],
                settings: Settings | None = None, **kwargs: Any) -> Worker:
    services = WorkerServices(settings=settings or Settings(), db=None,
                              catalog=None,  # type: ignore[arg-type]
                              operations=queue, store=None)  # type: ignore[arg-type]
    return Worker(services, "w1", list(handlers) or ["job"], lease_s=LEASE_S,
                  heartbeat_s=HEARTBEAT_S, lookup=kwargs.pop("lookup", table(handlers)),
                  clock=clock, **kwargs)


def heartbeat_answers(clock: FakeClock, queue: QueueDouble, verdict: str,
                      ctx: OperationContext) -> None:
    """From inside a handler: the next lease heartbeat answers ``verdict``; wait for it."""
    queue.verdict = verdict
    clock.wait_for_waiters(1)  # the lease heartbeat thread is waiting for its interval
    clock.advance(HEARTBEAT_S)
    assert ctx.interrupt.wait(WAIT_S), "the heartbeat did not interrupt the handler"


# -- success --------------------------------------------------------------------------------


def test_success_records_the_handlers_result(clock: FakeClock, queue: QueueDouble) -> None:
    op_id = queue.add("job")
    worker = make_worker(queue, clock, {"job": lambda ctx: {"written": 3}})

    assert worker.run_one() is True

    assert queue.named("finish") == [
        ("finish", op_id, worker.owner, "succeeded", {"written": 3}, None, True)]
    assert queue.ops[op_id].state == "succeeded"


def test_a_handler_returning_nothing_records_an_empty_result(
        clock: FakeClock, queue: QueueDouble) -> None:
    queue.add("job")
    worker = make_worker(queue, clock, {"job": lambda ctx: None})
    worker.run_one()
    assert queue.named("finish")[0][3:5] == ("succeeded", {})


def test_nothing_to_claim_runs_nothing(clock: FakeClock, queue: QueueDouble) -> None:
    worker = make_worker(queue, clock, {"job": lambda ctx: None})
    assert worker.run_one() is False
    assert queue.named("finish") == []


def test_heartbeats_extend_the_lease_and_carry_progress(
        clock: FakeClock, queue: QueueDouble) -> None:
    def handler(ctx: OperationContext) -> dict[str, Any]:
        ctx.progress(0.25, "a quarter")
        clock.wait_for_waiters(1)
        assert queue.named("heartbeat") == []  # none before the interval has passed
        clock.advance(HEARTBEAT_S)
        assert queue.beats.acquire(timeout=WAIT_S)
        return {}

    op_id = queue.add("job")
    worker = make_worker(queue, clock, {"job": handler})
    worker.run_one()

    assert queue.named("heartbeat") == [
        ("heartbeat", op_id, worker.owner, LEASE_S, 0.25, "a quarter")]


# -- failures and back-off ------------------------------------------------------------------


@pytest.mark.parametrize("error", [InvalidInput("bad params"), RuntimeError("disk on fire")])
def test_a_raising_handler_is_recorded_as_a_retryable_failure(
        clock: FakeClock, queue: QueueDouble, error: Exception) -> None:
    def handler(ctx: OperationContext) -> None:
        raise error

    op_id = queue.add("job")
    worker = make_worker(queue, clock, {"job": handler})
    worker.run_one()

    [(_, _, owner, state, result, detail, retryable)] = queue.named("finish")
    assert (owner, state, result, retryable) == (worker.owner, "failed", None, True)
    assert detail.endswith(f"{type(error).__name__}: {error}")
    assert queue.ops[op_id].state == "queued"  # attempt 1 of 3: it will be retried


def test_failures_back_off_then_fail_after_max_attempts(
        clock: FakeClock, queue: QueueDouble) -> None:
    def handler(ctx: OperationContext) -> None:
        raise RuntimeError("still broken")

    op_id = queue.add("job", max_attempts=3)
    worker = make_worker(queue, clock, {"job": handler})

    assert worker.run_one() is True  # attempt 1 fails: claimable again in 2 s
    for delay in (retry_delay_s(1), retry_delay_s(2)):
        clock.advance(delay - 0.5)
        assert worker.run_one() is False, "claimed before its back-off ran out"
        clock.advance(0.5)
        assert worker.run_one() is True
    assert [retry_delay_s(1), retry_delay_s(2)] == [2.0, 4.0]

    op = queue.ops[op_id]
    assert (op.state, op.attempts) == ("failed", 3)
    assert [c[3] for c in queue.named("finish")] == ["failed"] * 3
    clock.advance(3600)
    assert worker.run_one() is False  # a failed operation is never claimed again


# -- interruptions --------------------------------------------------------------------------


def test_a_cancel_seen_by_the_heartbeat_interrupts_and_cancels(
        clock: FakeClock, queue: QueueDouble) -> None:
    def handler(ctx: OperationContext) -> None:
        heartbeat_answers(clock, queue, "cancel", ctx)
        ctx.progress(0.5)  # the handler's next progress report raises Interrupted
        raise AssertionError("not interrupted")

    op_id = queue.add("job")
    worker = make_worker(queue, clock, {"job": handler})
    worker.run_one()

    assert queue.named("finish") == [
        ("finish", op_id, worker.owner, "cancelled", None, None, True)]
    assert queue.named("release") == []


def test_a_cancel_during_the_last_step_still_wins(clock: FakeClock, queue: QueueDouble) -> None:
    def handler(ctx: OperationContext) -> dict[str, Any]:
        heartbeat_answers(clock, queue, "cancel", ctx)
        return {"finished": True}  # without another progress report

    queue.add("job")
    make_worker(queue, clock, {"job": handler}).run_one()
    assert [c[3] for c in queue.named("finish")] == ["cancelled"]


def test_a_lost_lease_interrupts_and_records_nothing(
        clock: FakeClock, queue: QueueDouble) -> None:
    def handler(ctx: OperationContext) -> None:
        heartbeat_answers(clock, queue, "lost", ctx)
        ctx.check()

    op_id = queue.add("job")
    make_worker(queue, clock, {"job": handler}).run_one()

    # Another worker owns the operation now; only it may record the end.
    assert queue.named("finish") == [] and queue.named("release") == []
    assert queue.ops[op_id].state == "running"


def test_shutdown_gives_the_operation_back_to_the_queue(
        clock: FakeClock, queue: QueueDouble) -> None:
    worker: Worker

    def handler(ctx: OperationContext) -> None:
        worker.stop()  # what SIGTERM does while a step runs
        ctx.progress(0.5)

    op_id = queue.add("job")
    worker = make_worker(queue, clock, {"job": handler})
    worker.run_one()

    assert queue.named("release") == [("release", op_id, worker.owner)]
    assert queue.named("finish") == []
    assert (queue.ops[op_id].state, queue.ops[op_id].attempts) == ("queued", 0)


def test_a_failing_heartbeat_does_not_interrupt_the_handler(
        clock: FakeClock, queue: QueueDouble) -> None:
    beats = threading.Semaphore(0)

    def broken_heartbeat(*args: Any, **kwargs: Any) -> str:
        beats.release()
        raise ConnectionError("catalog away")

    def handler(ctx: OperationContext) -> dict[str, Any]:
        for _ in range(2):  # two failed heartbeats in a row
            clock.wait_for_waiters(1)
            clock.advance(HEARTBEAT_S)
            assert beats.acquire(timeout=WAIT_S)
        ctx.check()
        return {"ok": True}

    queue.heartbeat = broken_heartbeat  # type: ignore[method-assign]
    queue.add("job")
    make_worker(queue, clock, {"job": handler}).run_one()
    assert [c[3:5] for c in queue.named("finish")] == [("succeeded", {"ok": True})]


# -- unknown kinds --------------------------------------------------------------------------


def test_an_unknown_kind_fails_at_once_without_retry(
        clock: FakeClock, queue: QueueDouble) -> None:
    op_id = queue.add("from-a-newer-version")
    worker = make_worker(queue, clock, {"job": lambda ctx: {}})
    worker.kinds.append("from-a-newer-version")
    worker.run_one()

    [(_, _, _, state, result, error, retryable)] = queue.named("finish")
    assert (state, result, retryable) == ("failed", None, False)
    assert "from-a-newer-version" in error
    assert queue.ops[op_id].state == "failed"  # attempt 1 of 3, yet not queued again


def test_the_default_lookup_is_the_kinds_table(clock: FakeClock, queue: QueueDouble) -> None:
    queue.add("no-such-kind")
    services = WorkerServices(settings=Settings(), db=None, catalog=None,  # type: ignore[arg-type]
                              operations=queue, store=None)  # type: ignore[arg-type]
    Worker(services, "w1", ["no-such-kind"], clock=clock).run_one()

    [finish] = queue.named("finish")
    assert finish[3] == "failed" and finish[6] is False
    assert "unknown operation kind 'no-such-kind'" in finish[5]


# -- the loop -------------------------------------------------------------------------------


def test_the_loop_survives_a_failed_claim_and_polls_on_the_clock(
        clock: FakeClock, queue: QueueDouble) -> None:
    queue.claim_error = ConnectionError("catalog restarting")
    worker = make_worker(queue, clock, {"job": lambda ctx: {}})
    loop = threading.Thread(target=worker.run_forever)
    loop.start()
    try:
        assert queue.claimed.acquire(timeout=WAIT_S)  # the failed claim
        clock.wait_for_waiters(2)  # the poll wait and the component heartbeat
        assert len(queue.named("claim")) == 1
        clock.advance(worker.poll_s)
        assert queue.claimed.acquire(timeout=WAIT_S)  # polled again, still alive
    finally:
        worker.stop()
        loop.join(WAIT_S)
    assert not loop.is_alive()
    assert queue.named("component_state")[-1] == ("component_state", "w1", "worker", "stopped")


# -- dependency outages (issue 17) ----------------------------------------------------------


def _run_due(worker: Worker, queue: QueueDouble, clock: FakeClock, op_id: int) -> None:
    """Move the fake clock to the operation's retry time and run it."""
    clock.advance(max(queue.retry_at.get(op_id, clock.monotonic()) - clock.monotonic(), 0))
    assert worker.run_one() is True


def test_an_unreachable_dependency_delays_the_operation_without_spending_attempts(
        clock: FakeClock, queue: QueueDouble) -> None:
    """Before: three failures within ~6.5 s ended the operation for good."""
    down = [False] + [True] * 7  # popped from the end: seven tries fail, then it works

    def handler(ctx: OperationContext) -> dict[str, Any]:
        if down.pop():
            raise Unreachable("upsert: Qdrant is unreachable: connection refused")
        return {"indexed": 1}

    settings = Settings(operation_outage_giveup_s=3600, operation_outage_retry_max_s=30)
    op_id = queue.add("job", max_attempts=3)
    worker = make_worker(queue, clock, {"job": handler}, settings)
    for _ in range(7):
        _run_due(worker, queue, clock, op_id)
        assert queue.ops[op_id].state == "queued" and queue.ops[op_id].attempts == 0
    delays = [call[4] for call in queue.named("defer")]
    assert delays == [outage_retry_delay_s(n, 30) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert queue.named("finish") == []
    message = queue.ops[op_id].message
    assert message is not None and message.startswith("waiting for the query engine: upsert")
    _run_due(worker, queue, clock, op_id)
    assert queue.ops[op_id].state == "succeeded"


def test_an_outage_longer_than_the_give_up_bound_fails(
        clock: FakeClock, queue: QueueDouble) -> None:
    def handler(ctx: OperationContext) -> None:
        raise RuntimeError("index step failed") from Unreachable("Qdrant answered 503")

    settings = Settings(operation_outage_giveup_s=60, operation_outage_retry_max_s=30)
    op_id = queue.add("job")
    worker = make_worker(queue, clock, {"job": handler}, settings)
    while queue.ops[op_id].state == "queued":
        _run_due(worker, queue, clock, op_id)
    assert queue.ops[op_id].state == "failed"
    assert all(call[5] == 60 for call in queue.named("defer"))
    assert queue.named("defer")[0][3] == "Qdrant answered 503"  # the cause, chained


def test_other_unavailability_is_an_ordinary_failure(
        clock: FakeClock, queue: QueueDouble) -> None:
    def handler(ctx: OperationContext) -> None:
        raise Unavailable("Qdrant refused the API key")  # waiting cannot help

    queue.add("job")
    worker = make_worker(queue, clock, {"job": handler})
    worker.run_one()
    assert queue.named("defer") == [] and len(queue.named("finish")) == 1


# -- footprint (issue 15) -------------------------------------------------------------------


class _OverlapCountingQueue(QueueDouble):
    """Claims and component heartbeats that take a while and count how many overlap:
    each holds a catalog connection, and the pool keeps as many as overlapped."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self._lock = threading.Lock()
        self._inside = 0
        self.most_at_once = 0

    def _hold(self) -> None:
        with self._lock:
            self._inside += 1
            self.most_at_once = max(self.most_at_once, self._inside)
        threading.Event().wait(0.05)  # a slow statement; long enough for another to try
        with self._lock:
            self._inside -= 1

    def claim(self, owner: str, kinds: Sequence[str], lease_s: float) -> Operation | None:
        self._hold()
        return super().claim(owner, kinds, lease_s)

    def component_heartbeat(self, name: str, kind: str, **fields: Any) -> None:
        self._hold()
        super().component_heartbeat(name, kind, **fields)


def test_the_loops_of_one_process_poll_the_catalog_one_at_a_time(clock: FakeClock) -> None:
    queue = _OverlapCountingQueue(clock)
    services = WorkerServices(settings=Settings(), db=None, catalog=None,  # type: ignore[arg-type]
                              operations=queue, store=None)  # type: ignore[arg-type]
    workers = [Worker(services, f"w{i}", ["job"], clock=clock) for i in range(4)]
    threads = [threading.Thread(target=w.run_one) for w in workers]
    threads += [threading.Thread(target=w._component_heartbeat) for w in workers]
    for thread in threads:
        thread.start()
    for worker in workers:
        worker._stopping.set()  # each heartbeat thread beats once, then ends
    for thread in threads:
        thread.join(WAIT_S)
    assert len(queue.named("claim")) == 4 and len(queue.named("component_heartbeat")) == 4
    assert queue.most_at_once == 1  # without the shared lock: 2 to 8


def test_memory_an_operation_freed_is_given_back_after_it(
        clock: FakeClock, queue: QueueDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[int] = []
    monkeypatch.setattr("chroma.control.worker.release_unused",
                        lambda: released.append(len(queue.named("finish"))))
    queue.add("job")
    worker = make_worker(queue, clock, {"job": lambda ctx: {}})
    assert worker.run_one()
    assert released == [1]  # once, after the outcome was recorded
    assert not worker.run_one()  # nothing claimed: nothing to give back
    assert released == [1]
