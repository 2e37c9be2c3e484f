"""The worker loop: claim an operation, run its handler with a heartbeat, record the end.

One loop per worker component (``chroma worker`` runs one; under ``chroma run`` one
process runs every component's loop, each in its own thread: :func:`run_workers`). The
heartbeat thread extends the lease every ``lease_s / 3`` seconds and carries progress;
it interrupts the handler when a cancel is requested or the lease is lost. SIGTERM
finishes the current step and gives the operation back to the queue.

A dependency outage delays an operation, it does not end it: a handler that fails with
:class:`chroma.errors.Unreachable` (the query engine refused the connection, timed out,
answered 502-504) is put back in the queue without spending an attempt, after a capped
exponential back-off (:func:`chroma.catalog.operations.outage_retry_delay_s`), until the
outage has lasted ``Settings.operation_outage_giveup_s``; it then reads the whole change
feed it missed meanwhile.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chroma.catalog import Catalog, Database, Operation, Operations, apply_migrations
from chroma.catalog.operations import outage_retry_delay_s
from chroma.clock import SYSTEM_CLOCK, Clock
from chroma.errors import Unreachable
from chroma.memory import note_work_ended, release_unused
from chroma.operations.context import Interrupted, OperationContext
from chroma.operations.kinds import OperationKind, OperationUnavailable, kind_of
from chroma.settings import Settings
from chroma.storage import FileStore, open_store

__all__ = ["Worker", "WorkerServices", "run_worker", "run_workers", "start_worker_loops"]

log = logging.getLogger(__name__)

WORKER_IDLE_CONNECTION_S = 10.0
"""A worker process's pooled connections close after this long unneeded (the API's: 30 s)."""


@dataclass
class WorkerServices:
    settings: Settings
    db: Database
    catalog: Catalog
    operations: Operations
    store: FileStore
    chatter: threading.Lock = field(default_factory=threading.Lock)
    """Taken by the process's idle polling (claims, component heartbeats), so that a
    process of several loops keeps one catalog connection busy while idle, not one per
    loop (psycopg's pool keeps as many as were in use at once; each is a PostgreSQL
    backend of ~15 MiB). A claim takes milliseconds; lease heartbeats do not wait."""

    @classmethod
    def open(cls, settings: Settings, *, loops: int = 1) -> WorkerServices:
        """``loops``: worker loops sharing it (each uses up to three connections at once:
        claim or handler, lease heartbeat, component heartbeat; handlers rarely more)."""
        if settings.database_url is None:
            raise RuntimeError("CHROMA_DATABASE_URL is not set")
        dsn = settings.database_url.get_secret_value()
        apply_migrations(dsn)
        # Nothing here waits on a connection being opened but an operation's start.
        db = Database(dsn, max_size=4 + 2 * (loops - 1), max_idle=WORKER_IDLE_CONNECTION_S,
                      name="chroma workers")
        db.open()
        catalog = Catalog(db)
        return cls(settings, db, catalog, catalog.operations, open_store(settings))

    def close(self) -> None:
        self.db.close()


KindLookup = Callable[[str], OperationKind]
"""Finds an operation kind's table entry; raises ``OperationUnavailable`` for an unknown one."""


class Worker:
    """Claims and runs operations of ``kinds`` until :meth:`stop`.

    ``lookup`` (the kinds table by default) and ``clock`` (the system clock by default) are
    seams for tests: a handler table of their own, and time that moves only when they say.
    """

    def __init__(
        self, services: WorkerServices, name: str, kinds: Sequence[str], *,
        lease_s: float = 15.0, poll_s: float = 0.5, heartbeat_s: float = 2.0,
        lookup: KindLookup = kind_of, clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.services = services
        self.name = name
        self.kinds = list(kinds)
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.lookup = lookup
        self.clock = clock
        self.owner = f"{name}@{socket.gethostname()}:{os.getpid()}"
        self._stopping = threading.Event()
        self._current: OperationContext | None = None

    def stop(self) -> None:
        self._stopping.set()
        if self._current is not None:
            self._current.stop("shutdown")

    def run_forever(self) -> None:
        ops = self.services.operations
        beat = threading.Thread(target=self._component_heartbeat, daemon=True)
        beat.start()
        while not self._stopping.is_set():
            try:
                ran = self.run_one()
            except Exception:  # the catalog may be briefly away; keep the loop alive
                log.exception("worker %s: claiming failed", self.name)
                ran = False
            if not ran:
                self.clock.wait(self._stopping, self.poll_s)
        ops.component_state(self.name, "worker", "stopped")

    def run_one(self, operation: Operation | None = None) -> bool:
        """Claim (or take the given claimed) operation and run it; False if none was free."""
        ops = self.services.operations
        if operation is None:
            with self.services.chatter:
                operation = ops.claim(self.owner, self.kinds, self.lease_s)
        if operation is None:
            return False
        op = operation
        log.info("worker %s: running %s #%d (attempt %d)", self.name, op.kind, op.id,
                 op.attempts)
        ctx = OperationContext(op, self.services.settings, self.services.catalog, ops,
                               self.services.store)
        self._current = ctx
        done = threading.Event()
        lease = threading.Thread(target=self._lease_heartbeat, args=(ctx, done), daemon=True)
        lease.start()
        try:
            result = self._execute(ctx)
        finally:
            done.set()
            lease.join()
            self._current = None
        self._record(ctx, *result)
        release_unused()  # what the operation freed (arrays, Arrow buffers): ~150 MiB
        note_work_ended()  # the idle-only release (catalog connections) once quiet
        return True

    def _execute(self, ctx: OperationContext) -> tuple[str, dict[str, Any] | None, str | None]:
        try:
            handler = self.lookup(ctx.operation.kind).handler
        except OperationUnavailable as exc:
            return "unavailable", None, exc.message
        try:
            result = handler(ctx)
            ctx.check()  # a cancel that arrived during the last step still wins
            return "succeeded", result or {}, None
        except Interrupted as exc:
            return exc.reason, None, None
        except Exception as exc:
            outage = _unreachable(exc)
            if outage is not None:
                log.warning("operation %s #%d: dependency unreachable: %s",
                            ctx.operation.kind, ctx.operation.id, outage)
                return "unreachable", None, str(outage)
            log.exception("operation %s #%d failed", ctx.operation.kind, ctx.operation.id)
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            return "failed", None, detail

    def _record(self, ctx: OperationContext, outcome: str, result: dict[str, Any] | None,
                error: str | None) -> None:
        ops = self.services.operations
        op = ctx.operation
        if outcome == "shutdown":
            ops.release(op.id, self.owner)
        elif outcome == "lost":
            log.warning("operation #%d: lease lost; another worker owns it now", op.id)
        elif outcome == "cancel":
            ops.finish(op.id, self.owner, "cancelled")
        elif outcome == "unavailable":  # retrying cannot help
            ops.finish(op.id, self.owner, "failed", error=error, retryable=False)
        elif outcome == "unreachable":  # waiting can: no attempt spent, until the give-up
            settings = self.services.settings
            verdict = ops.defer(
                op.id, self.owner, error or "unreachable",
                delay_s=outage_retry_delay_s(op.outage_retries,
                                             settings.operation_outage_retry_max_s),
                giveup_s=settings.operation_outage_giveup_s)
            log.warning("operation #%d: %s", op.id,
                        "gave up waiting" if verdict == "gave-up" else verdict)
        else:
            ops.finish(op.id, self.owner, outcome, result=result, error=error)

    def _lease_heartbeat(self, ctx: OperationContext, done: threading.Event) -> None:
        ops = self.services.operations
        while not self.clock.wait(done, min(self.lease_s / 3, self.heartbeat_s)):
            try:
                verdict = ops.heartbeat(ctx.operation.id, self.owner, self.lease_s,
                                        ctx.progress_value, ctx.progress_message)
            except Exception:
                log.exception("lease heartbeat failed")
                continue
            if verdict != "ok":
                ctx.stop(verdict)

    def _component_heartbeat(self) -> None:
        started = self.clock.monotonic()
        while not self._stopping.is_set():
            try:
                with self.services.chatter:
                    self.services.operations.component_heartbeat(
                        self.name, "worker", pid=os.getpid(), host=socket.gethostname(),
                        kinds=self.kinds)
            except Exception:
                log.warning("component heartbeat failed", exc_info=True)
            self.clock.wait(self._stopping, self.heartbeat_s)
        log.debug("worker %s ran %.0fs", self.name, self.clock.monotonic() - started)


def _unreachable(exc: BaseException) -> Unreachable | None:
    """The :class:`Unreachable` that ``exc`` is, or was raised from (``raise ... from``)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, Unreachable):
            return seen
        seen = seen.__cause__
    return None


def run_worker(name: str, kinds: Sequence[str]) -> None:
    """Entry point of a worker process with one loop: serve until SIGTERM/SIGINT."""
    run_workers({name: kinds})


def run_workers(loops: Mapping[str, Sequence[str]]) -> None:
    """Entry point of a worker process: one claim loop (thread) per ``name -> kinds``,
    sharing this process's catalog pool, store and libraries, until SIGTERM/SIGINT.

    Each loop is its own component (status, heartbeat, operation owner), so operations of
    different loops still run side by side; one process instead of one per loop saves
    a resident copy of Python, numpy, pyarrow and the rest per loop (``chroma run``)."""
    label = ",".join(loops)
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s [{label}] %(name)s %(message)s")
    services, workers = _open_loops(loops)

    def stop(*_: object) -> None:
        for worker in workers:
            worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    threading.current_thread().name = workers[0].name
    threads = [threading.Thread(target=w.run_forever, name=w.name) for w in workers[1:]]
    for thread in threads:
        thread.start()
    try:
        workers[0].run_forever()  # the main thread: it receives the signals
    finally:
        stop()
        for thread in threads:
            thread.join()
        services.close()


def start_worker_loops(loops: Mapping[str, Sequence[str]]) -> Callable[[], None]:
    """Worker loops as background threads of a process whose main thread serves something
    else (``chroma run``'s API process runs the ``indexer`` so that it hosts the index);
    the same claims, leases, heartbeats and status as :func:`run_workers`.

    The index is opened (and hosted) before this returns, so the process's readers find
    it in-process. Returns the stop: each loop gives its operation back, then it joins
    them and closes their catalog pool."""
    services, workers = _open_loops(loops)
    threads = [threading.Thread(target=w.run_forever, name=w.name, daemon=True)
               for w in workers]
    for thread in threads:
        thread.start()

    def stop() -> None:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join()
        services.close()

    return stop


def _open_loops(loops: Mapping[str, Sequence[str]]) -> tuple[WorkerServices, list[Worker]]:
    """The shared services and one :class:`Worker` per loop; the indexer hosts the index."""
    services = WorkerServices.open(Settings(), loops=len(loops))
    settings = services.settings
    if any("index" in kinds for kinds in loops.values()):
        _host_index(settings)
    _name_log_records_after_their_loop(set(loops))
    workers = [Worker(services, name, kinds, lease_s=settings.operation_lease_s,
                      poll_s=settings.worker_poll_s) for name, kinds in loops.items()]
    return services, workers


def _name_log_records_after_their_loop(names: set[str]) -> None:
    """A record logged by a worker loop's thread names that worker where the log format
    names the process (as when each worker was a process of its own)."""
    make = logging.getLogRecordFactory()

    def named(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if record.threadName in names:
            record.processName = record.threadName
        return record

    logging.setLogRecordFactory(named)


def _host_index(settings: Settings) -> None:
    """The indexer hosts the embedded index from its start, so searches need not wait
    for the first index operation to open it."""
    from chroma.index.hosting.host import hosted_engine

    try:
        hosted_engine(settings)
    except Exception as exc:  # e.g. another process hosts it; operations will retry
        log.warning("not hosting the index at start-up: %s", exc)
