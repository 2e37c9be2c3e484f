"""The implicit triggers of one API process, without a database or real time.

Issue 12 defect 1: the debounce was leading-edge only, so a commit within
``index_trigger_debounce_s`` of the last trigger queued nothing, ever. Time comes from a
:class:`FakeClock` and the trailing call from a recorded schedule the test runs itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from chroma.api.services import IMPLICIT_OPERATIONS, Services, TrailingDebounce
from chroma.catalog.changes import FeedLag
from chroma.catalog.operations import Operation
from chroma.ingest import CommitResult
from chroma.settings import Settings

from .fake_clock import FakeClock

A, B = "aa" * 20, "bb" * 20


class Timers:
    """A schedule that keeps its calls for the test to run."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay_s: float, action: Callable[[], None]) -> None:
        self.pending.append((delay_s, action))

    def run(self) -> list[float]:
        ran, self.pending = self.pending, []
        for _, action in ran:
            action()
        return [delay for delay, _ in ran]


def _operation(op_id: int, kind: str, key: str | None) -> Operation:
    return Operation(
        id=op_id, kind=kind, embedding_set_key=key, params={}, state="queued", progress=0.0,
        message=None, attempts=0, max_attempts=3, requested_by="trigger",
        cancel_requested=False, lease_owner=None, lease_expires_at=None, retry_at=None,
        created_at=datetime.now(UTC), started_at=None, finished_at=None, result=None,
        error=None)


@dataclass
class RecordingOperations:
    """Records every enqueue; ``wants`` answers ``wants_wakeup``."""

    calls: list[tuple[str, str | None, str]] = field(default_factory=list)
    wants: dict[tuple[str, str], bool] = field(default_factory=dict)

    def enqueue(self, kind: str, key: str | None = None, *, requested_by: str = "api",
                **_: Any) -> tuple[Operation, bool]:
        self.calls.append((kind, key, requested_by))
        return _operation(len(self.calls), kind, key), False

    def wants_wakeup(self, kind: str, key: str) -> bool:
        return self.wants.get((kind, key), True)


def services(ops: RecordingOperations, clock: FakeClock, timers: Timers,
             catalog: Any = None) -> Services:
    return Services(Settings(index_trigger_debounce_s=1.0), None, catalog,  # type: ignore[arg-type]
                    None, None, ops, clock=clock, schedule=timers)  # type: ignore[arg-type]


def test_a_commit_within_the_debounce_period_is_triggered_at_its_end() -> None:
    clock, timers, ops = FakeClock(), Timers(), RecordingOperations()
    api = services(ops, clock, timers)
    api.trigger_index([CommitResult(A, ["1"])])
    assert [(k, key) for k, key, _ in ops.calls] == [(kind, A) for kind in IMPLICIT_OPERATIONS]
    clock.advance(0.3)
    api.trigger_index([CommitResult(A, ["2"])])  # within the period: not now...
    api.records_changed(A)  # ...and a tag change too: one delayed trigger covers both
    assert len(ops.calls) == len(IMPLICIT_OPERATIONS)
    # ...but at the end of the period, with no more traffic:
    assert timers.run() == [pytest.approx(0.7)]
    assert len(ops.calls) == 2 * len(IMPLICIT_OPERATIONS)
    assert timers.run() == []  # and nothing more


def test_the_debounce_is_per_embedding_set_and_fires_at_once_after_the_period() -> None:
    clock, timers = FakeClock(), Timers()
    fired: list[str] = []
    debounce = TrailingDebounce(1.0, fired.append, clock=clock, schedule=timers)
    debounce(A)
    debounce(B)
    clock.advance(0.5)
    debounce(A)
    assert fired == [A, B]
    clock.advance(0.2)
    timers.run()
    assert fired == [A, B, A]
    clock.advance(1.0)
    debounce(A)  # a period after the trailing call: at once
    assert fired == [A, B, A, A] and timers.pending == []


@dataclass
class LaggingChanges:
    lags: list[FeedLag]

    def feed_lag(self) -> list[FeedLag]:
        return self.lags


@dataclass
class LaggingCatalog:
    changes: LaggingChanges


def test_the_freshness_check_queues_what_lags_with_nothing_to_catch_up() -> None:
    ops = RecordingOperations(wants={("recommend", A): False})
    changes = LaggingChanges([
        FeedLag(A, head_seq=10, indexed_seq=5, scored_seq=5, index_lag=5, queue_lag=5),
        FeedLag(B, head_seq=10, indexed_seq=10, scored_seq=7, index_lag=0, queue_lag=3),
        FeedLag("cc" * 20, head_seq=4, indexed_seq=4, scored_seq=4, index_lag=0, queue_lag=0),
    ])
    api = services(ops, FakeClock(), Timers(), LaggingCatalog(changes))
    api.check_freshness()
    assert ops.calls == []  # changes younger than one check are left to their triggers
    changes.lags[0] = FeedLag(A, head_seq=12, indexed_seq=9, scored_seq=5, index_lag=3,
                              queue_lag=7)
    api.check_freshness()
    assert ops.calls == [("index", A, "freshness check"), ("recommend", B, "freshness check")]
