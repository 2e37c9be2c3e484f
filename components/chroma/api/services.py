"""The long-lived objects one API process holds, opened and closed with the app, and the
implicit triggers: committed changes queue ``index`` and ``recommend`` (DESIGN.md §12).

No wake-up is lost: the per-process debounce (:class:`TrailingDebounce`) always fires
once more after the last change it swallowed, the catalog never coalesces a trigger into
an operation that may have read the change feed already (``Operations.enqueue``), and a
periodic check of the change-feed watermarks (:meth:`Services.check_freshness`) queues
what a process that died between a commit and its trigger did not.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

from chroma.api.freshfeed import FreshFeed
from chroma.catalog import Catalog, Database, Operations, apply_migrations
from chroma.clock import SYSTEM_CLOCK, Clock
from chroma.index.hosting import invalidate
from chroma.ingest import CommitResult, GroupCommitter
from chroma.labelling import Assessor
from chroma.labelling.projection import MapCache
from chroma.operations.launchers import OperationLauncher, QueueLauncher, make_launcher
from chroma.settings import Settings
from chroma.storage import FileStore, open_store

__all__ = ["Services", "TrailingDebounce"]

log = logging.getLogger(__name__)

IMPLICIT_OPERATIONS = ("index", "recommend")
"""What a commit queues for its embedding set, so that nobody has to ask."""

Schedule = Callable[[float, Callable[[], None]], None]
"""Runs a function once, that many seconds from now (a timer thread; a test calls it)."""


def _timer(delay_s: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(delay_s, action)
    timer.daemon = True
    timer.start()


class TrailingDebounce:
    """Calls ``fire(key)`` at most once per ``period_s`` per key, and always once more
    after the last call it swallowed (leading and trailing edge): a change that arrives
    within the period is covered by the delayed call, never dropped."""

    def __init__(self, period_s: float, fire: Callable[[str], None], *,
                 clock: Clock = SYSTEM_CLOCK, schedule: Schedule = _timer) -> None:
        self.period_s = period_s
        self.fire = fire
        self.clock = clock
        self.schedule = schedule
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._pending: set[str] = set()

    def __call__(self, key: str) -> None:
        with self._lock:
            if key in self._pending:  # the delayed call has not fired yet: it covers this
                return
            now = self.clock.monotonic()
            wait = self._last.get(key, float("-inf")) + self.period_s - now
            if wait > 0:
                self._pending.add(key)
                self.schedule(wait, lambda: self._trailing(key))
                return
            self._last[key] = now
        self.fire(key)

    def _trailing(self, key: str) -> None:
        with self._lock:
            # Discarded before firing: a call from now on is after what ``fire`` reads.
            self._pending.discard(key)
            self._last[key] = self.clock.monotonic()
        try:
            self.fire(key)
        except Exception:  # the freshness check queues it later (Services.check_freshness)
            log.exception("delayed trigger of %s failed", key)


@dataclass
class Services:
    settings: Settings
    db: Database
    catalog: Catalog
    store: FileStore
    committer: GroupCommitter
    operations: Operations
    component_name: str = "api"
    _stop: threading.Event = field(default_factory=threading.Event)
    commit_listeners: list[Callable[[list[CommitResult]], None]] = field(default_factory=list)
    launcher: OperationLauncher = field(default_factory=QueueLauncher)
    clock: Clock = SYSTEM_CLOCK
    schedule: Schedule = _timer
    _debounce: TrailingDebounce = field(init=False)
    fresh_feed: FreshFeed | None = None
    _heads: dict[str, int] = field(init=False, default_factory=dict)
    """Each set's change-feed head at the previous freshness check."""

    FRESHNESS_REQUESTER: ClassVar[str] = "freshness check"

    def __post_init__(self) -> None:
        self._debounce = TrailingDebounce(self.settings.index_trigger_debounce_s,
                                          self.queue_implicit, clock=self.clock,
                                          schedule=self.schedule)

    @classmethod
    def open(cls, settings: Settings) -> Services:
        if settings.database_url is None:
            raise RuntimeError(
                "CHROMA_DATABASE_URL is not set: use `chroma run` (which starts its own "
                "PostgreSQL) or point CHROMA_DATABASE_URL at a server"
            )
        dsn = settings.database_url.get_secret_value()
        apply_migrations(dsn)
        db = Database(dsn, max_size=settings.db_pool_max, name="chroma api")
        db.open()
        catalog = Catalog(db)
        store = open_store(settings)
        committer = GroupCommitter(
            catalog,
            store,
            window_s=settings.group_commit_window_ms / 1000.0,
            max_records=settings.group_commit_max_records,
        )
        name = os.environ.get("CHROMA_COMPONENT_NAME") or (
            "api" if settings.mode == "embedded" else f"api@{socket.gethostname()}"
        )
        services = cls(settings, db, catalog, store, committer, catalog.operations, name,
                       launcher=make_launcher(settings))
        if settings.index_backend == "edge":  # remote: see chroma.api.freshfeed
            services.fresh_feed = FreshFeed(settings)
            services.commit_listeners.append(services.fresh_feed)
        committer.on_commit = services.after_commit
        committer.start()
        threading.Thread(target=services._heartbeat, daemon=True, name="heartbeat").start()
        threading.Thread(target=services._freshness_loop, daemon=True,
                         name="freshness").start()
        return services

    def close(self) -> None:
        self._stop.set()
        self.committer.stop()
        if self.fresh_feed is not None:
            self.fresh_feed.close()
        try:
            self.operations.component_state(self.component_name, "api", "stopped")
        except Exception:
            log.debug("could not record the api as stopped", exc_info=True)
        self.db.close()

    @cached_property
    def assessor(self) -> Assessor:
        """Assessments of production records on /log (opened on first use)."""
        return Assessor(self.settings, self.catalog, self.store)

    @cached_property
    def maps(self) -> MapCache:
        """The maps ``GET /api/v1/map`` read lately (immutable files, kept decoded)."""
        return MapCache(self.store)

    def after_commit(self, results: list[CommitResult]) -> None:
        """Runs in the commit thread after the requests were answered."""
        for listener in self.commit_listeners:
            listener(results)
        self.trigger_index(results)

    def trigger_index(self, results: list[CommitResult]) -> None:
        """Implicit triggers: committed records make the index and the labelling queue
        stale; queue ``index`` and ``recommend`` (which waits for the index and refits
        MHB when the training data changed). Debounced per embedding set (trailing edge)."""
        for key in {r.embedding_set_key for r in results}:
            self.records_changed(key)

    def records_changed(self, key: str | None, *, invalidate_index: bool = False) -> None:
        """Queue the implicit operations of an embedding set whose records changed
        (logged, deleted, tagged): now, or at the end of the debounce period.

        ``invalidate_index`` (deletes and tags, before they are acknowledged): searches
        check their hits against the catalog until an index run has applied the change
        (``chroma.index.hosting.guard``)."""
        if key is None:
            return
        if invalidate_index:
            invalidate(self.settings, key)
        self._debounce(key)

    def queue_implicit(self, key: str, requested_by: str = "trigger",
                       kinds: tuple[str, ...] = IMPLICIT_OPERATIONS) -> None:
        """Queue (or join, or mark for a rerun: ``Operations.enqueue``) each of ``kinds``."""
        for kind in kinds:
            operation, created = self.operations.enqueue(kind, key, requested_by=requested_by)
            if created:
                log.info("queued %s operation #%d for %s", kind, operation.id, key)
                self.launcher.submit(operation)

    def check_freshness(self) -> None:
        """Queue the implicit operations of embedding sets whose index or labelling queue
        still lacks a change that was already at the head of the feed at the previous
        check, with nothing queued or running to catch up: a trigger lost with its process
        (killed between a commit and its trigger, or inside the debounce period). Changes
        younger than one check are left to their trigger. An operation that gave up (failed
        or was cancelled last) is left alone: ``/status`` shows it, and the next change
        triggers it again."""
        seen, self._heads = self._heads, {}
        for lag in self.catalog.changes.feed_lag():
            self._heads[lag.key] = lag.head_seq
            old_head = seen.get(lag.key, 0)
            behind = {"index": lag.indexed_seq < old_head, "recommend": lag.scored_seq < old_head}
            kinds = tuple(kind for kind in IMPLICIT_OPERATIONS
                          if behind[kind] and self.operations.wants_wakeup(kind, lag.key))
            if kinds:
                log.info("%s lags behind the change feed: queueing %s", lag.key, kinds)
                self.queue_implicit(lag.key, self.FRESHNESS_REQUESTER, kinds)

    def _freshness_loop(self) -> None:
        while not self.clock.wait(self._stop, self.settings.freshness_check_s):
            try:
                self.check_freshness()
            except Exception:
                log.warning("freshness check failed", exc_info=True)

    def _heartbeat(self) -> None:
        while not self._stop.is_set():
            try:
                self.operations.component_heartbeat(
                    self.component_name, "api", pid=os.getpid(), host=socket.gethostname())
            except Exception:
                log.debug("api heartbeat failed", exc_info=True)
            self._stop.wait(2.0)
