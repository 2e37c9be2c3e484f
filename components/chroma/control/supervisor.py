"""``chroma run``'s supervisor: start the API and worker processes, restart the dead.

Each child is a separate process (a fresh interpreter: :mod:`chroma.control.spawning`),
so each can be tested and operated alone; one child may serve several status components
(``chroma run``'s worker process runs every worker loop). A child that exits while the
system is running is restarted after an exponential backoff (reset once it has stayed up
for a while).
SIGINT/SIGTERM stop the children gracefully (SIGTERM, then SIGKILL after a timeout): the
API finishes in-flight commits, workers give their operation back to the queue.

It also watches servers it did not spawn but the children need (:class:`Watched`: the
embedded PostgreSQL): one found dead is started again with the same back-off. While it is
down the API's ``/ready`` answers 503 and requests fail fast with 503 (the catalog's pool
times out in seconds); the owner of such a server stops it after the supervisor returns.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from chroma.clock import SYSTEM_CLOCK, Clock
from chroma.control.spawning import ChildProcess, Spawner
from chroma.errors import ChromaError

__all__ = ["ChildSpec", "Supervisor", "Watched", "restart_delay"]

log = logging.getLogger(__name__)


@dataclass
class ChildSpec:
    """One supervised process: a name, what it is, and its entry point."""

    name: str
    kind: str  # api | worker
    target: Callable[..., None]
    args: tuple[Any, ...] = ()
    operation_kinds: Sequence[str] = ()
    components: Sequence[str] = ()
    """The status components the process serves (default: its name alone); the
    supervisor records its start, exit and restart for each of them."""

    @property
    def component_names(self) -> Sequence[str]:
        return self.components or (self.name,)


@dataclass
class _Child:
    spec: ChildSpec
    process: ChildProcess | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures_in_a_row: int = 0
    restart_at: float | None = None
    last_exit: int | None = field(default=None)


class Processes(Protocol):
    """Makes child processes (:class:`~chroma.control.spawning.Spawner`, or a
    ``multiprocessing`` context, or a test's fakes)."""

    def Process(self, target: Callable[..., None], args: tuple[Any, ...],
                name: str) -> Any: ...


class StatusRecords(Protocol):
    """Where the supervisor records its children's states (:class:`chroma.catalog.
    Operations`; under ``chroma run`` a :class:`~chroma.control.status.SpawnedRecorder`)."""

    def component_state(self, name: str, kind: str, state: str, *,
                        restarts: int | None = None, last_error: str | None = None,
                        pid: int | None = None) -> None: ...


class Watched(Protocol):
    """A server the children depend on: the supervisor restarts it when it dies."""

    name: str

    def alive(self) -> bool: ...

    def restart(self) -> None: ...


@dataclass
class _WatchState:
    server: Watched
    restart_at: float | None = None
    failures_in_a_row: int = 0
    restarts: int = 0
    up_since: float = 0.0


def restart_delay(failures_in_a_row: int, *, base_s: float = 0.5, cap_s: float = 30.0) -> float:
    """Exponential backoff: 0.5 s, 1 s, 2 s, ... capped at 30 s."""
    return min(cap_s, base_s * 2 ** max(failures_in_a_row - 1, 0))


class Supervisor:
    """Runs children until a signal asks it to stop.

    ``processes`` (:class:`~chroma.control.spawning.Spawner` by default) and ``clock`` (the
    system clock by default) are seams for tests: fake children and time that moves only
    when the test says, so the restart back-off is tested without processes or sleeps.
    """

    stable_after_s = 30.0
    stop_timeout_s = 20.0

    def __init__(
        self, specs: Sequence[ChildSpec], operations: StatusRecords | None = None, *,
        processes: Processes | None = None, clock: Clock = SYSTEM_CLOCK,
        watched: Sequence[Watched] = (),
    ) -> None:
        self.children = [_Child(spec) for spec in specs]
        self.watched = [_WatchState(server, up_since=clock.monotonic()) for server in watched]
        self.operations = operations
        # Not multiprocessing's spawn: it started a resource-tracker process (~13 MiB) and
        # re-ran the console script (the whole CLI) in every child, for nothing we use.
        self._ctx: Processes = processes if processes is not None else Spawner()
        self.clock = clock
        self._stopping = False

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)
        for child in self.children:
            self._start(child)
        try:
            while not self._stopping:
                self._check_watched()
                self._check_children()
                self.clock.sleep(0.2)
        finally:
            self._stop_all()

    def _start(self, child: _Child) -> None:
        spec = child.spec
        process = self._ctx.Process(target=spec.target, args=spec.args, name=spec.name)
        process.start()
        child.process = process
        child.started_at = self.clock.monotonic()
        child.restart_at = None
        log.info("started %s (pid %s)", spec.name, process.pid)
        self._record(spec, "starting", restarts=child.restarts, pid=process.pid)

    def _check_children(self) -> None:
        now = self.clock.monotonic()
        for child in self.children:
            process = child.process
            if child.restart_at is not None:
                if now >= child.restart_at and not self._stopping:
                    child.restarts += 1
                    self._start(child)
                continue
            if process is None or process.is_alive():
                continue
            child.last_exit = process.exitcode
            ran_for = now - child.started_at
            child.failures_in_a_row = 1 if ran_for > self.stable_after_s else (
                child.failures_in_a_row + 1)
            delay = restart_delay(child.failures_in_a_row)
            child.restart_at = now + delay
            log.warning("%s exited with %s after %.1fs; restarting in %.1fs",
                        child.spec.name, process.exitcode, ran_for, delay)
            self._record(child.spec, "down", restarts=child.restarts,
                         last_error=f"exited with code {process.exitcode}")

    def _check_watched(self) -> None:
        """Restart a dead watched server after the back-off; a failed start backs off more.

        Nothing is recorded in the catalog: the catalog is the server that is down.
        """
        now = self.clock.monotonic()
        for state in self.watched:
            if state.restart_at is None:
                if state.server.alive():
                    continue
                ran_for = now - state.up_since
                state.failures_in_a_row = 1 if ran_for > self.stable_after_s else (
                    state.failures_in_a_row + 1)
                state.restart_at = now + restart_delay(state.failures_in_a_row)
                log.error("%s died after %.1fs; restarting in %.1fs", state.server.name,
                          ran_for, state.restart_at - now)
            elif now >= state.restart_at and not self._stopping:
                self._restart_watched(state, now)

    def _restart_watched(self, state: _WatchState, now: float) -> None:
        try:
            state.server.restart()
        except Exception as exc:  # e.g. the old backends still hold shared memory
            state.failures_in_a_row += 1
            state.restart_at = now + restart_delay(state.failures_in_a_row)
            log.error("%s did not start (%s); next try in %.1fs", state.server.name, exc,
                      state.restart_at - now)
            return
        state.restart_at = None
        state.restarts += 1
        state.up_since = now
        log.warning("%s restarted (restart %d)", state.server.name, state.restarts)

    def _stop_all(self) -> None:
        alive = [c for c in self.children if c.process is not None and c.process.is_alive()]
        for child in alive:
            assert child.process is not None
            child.process.terminate()
        deadline = self.clock.monotonic() + self.stop_timeout_s
        for child in alive:
            assert child.process is not None
            child.process.join(max(0.0, deadline - self.clock.monotonic()))
            if child.process.is_alive():
                log.warning("%s did not stop in time; killing it", child.spec.name)
                child.process.kill()
                child.process.join(5)
        if all(state.server.alive() for state in self.watched):  # else: no catalog to write
            for child in self.children:
                self._record(child.spec, "stopped")
        log.info("all components stopped")

    def _record(self, spec: ChildSpec, state: str, **fields: Any) -> None:
        if self.operations is None:
            return
        for name in spec.component_names:
            try:
                self.operations.component_state(name, spec.kind, state, **fields)
            except ChromaError as exc:  # status is advisory; an outage needs no traceback
                log.warning("could not record %s as %s: %s", name, state, exc.message)
            except Exception:  # supervision must go on without it
                log.warning("could not record %s as %s", name, state, exc_info=True)
