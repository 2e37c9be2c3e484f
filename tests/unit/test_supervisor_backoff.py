"""The supervisor's restart back-off, with fake children and a fake clock (no processes).

``Supervisor(processes=..., clock=...)`` takes :class:`FakeProcesses` (a stand-in for the
multiprocessing context: children whose death the test decides) and a
:class:`FakeClock`, so each restart delay is checked to the instant without waiting for
it. Real child processes are supervised in tests/integration/test_supervisor.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chroma.control.supervisor import ChildSpec, Supervisor, restart_delay

from .fake_clock import FakeClock


class FakeProcess:
    """A child that runs until the test kills it."""

    _pids = iter(range(100, 10_000))

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> None:
        self.name = name
        self.pid = next(self._pids)
        self.exitcode: int | None = None
        self.started = False

    def start(self) -> None:
        self.started = True

    def is_alive(self) -> bool:
        return self.started and self.exitcode is None

    def die(self, code: int = 1) -> None:
        self.exitcode = code

    def terminate(self) -> None:
        self.die(-15)

    def join(self, timeout: float | None = None) -> None:
        pass


class FakeProcesses:
    """Stands in for ``multiprocessing.get_context("spawn")``: records each child made."""

    def __init__(self) -> None:
        self.made: list[FakeProcess] = []

    def Process(self, target: Callable[..., None], args: tuple[Any, ...],
                name: str) -> FakeProcess:
        self.made.append(FakeProcess(target, args, name))
        return self.made[-1]


class StatesDouble:
    """Records the component states the supervisor reports (the Operations interface)."""

    def __init__(self) -> None:
        self.states: list[tuple[str, str]] = []

    def component_state(self, name: str, kind: str, state: str, **fields: Any) -> None:
        self.states.append((name, state))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def processes() -> FakeProcesses:
    return FakeProcesses()


def supervise(processes: FakeProcesses, clock: FakeClock,
              states: StatesDouble | None = None) -> Supervisor:
    spec = ChildSpec("api", "api", target=lambda: None)
    supervisor = Supervisor([spec], states,  # type: ignore[arg-type]
                            processes=processes, clock=clock)  # type: ignore[arg-type]
    supervisor._start(supervisor.children[0])
    return supervisor


def restarts_after(supervisor: Supervisor, processes: FakeProcesses, clock: FakeClock,
                   delay: float) -> bool:
    """Check just before and at ``delay`` after the death; True if it restarted only then."""
    before = len(processes.made)
    clock.advance(delay - 0.25)
    supervisor._check_children()
    early = len(processes.made) > before
    clock.advance(0.25)
    supervisor._check_children()
    return not early and len(processes.made) == before + 1


def test_restart_delay_doubles_up_to_a_cap() -> None:
    assert [restart_delay(n) for n in range(8)] == [0.5, 0.5, 1, 2, 4, 8, 16, 30]


def test_a_child_dying_again_and_again_backs_off_exponentially(
        processes: FakeProcesses, clock: FakeClock) -> None:
    supervisor = supervise(processes, clock)
    for delay in (0.5, 1.0, 2.0, 4.0):
        processes.made[-1].die()
        supervisor._check_children()  # notices the death, schedules the restart
        assert restarts_after(supervisor, processes, clock, delay)
    assert supervisor.children[0].restarts == 4


def test_a_child_that_stayed_up_starts_the_back_off_afresh(
        processes: FakeProcesses, clock: FakeClock) -> None:
    supervisor = supervise(processes, clock)
    for delay in (0.5, 1.0):
        processes.made[-1].die()
        supervisor._check_children()
        assert restarts_after(supervisor, processes, clock, delay)

    clock.advance(Supervisor.stable_after_s + 1)  # up long enough to count as stable
    processes.made[-1].die()
    supervisor._check_children()
    assert restarts_after(supervisor, processes, clock, restart_delay(1))


def test_states_are_reported_and_stop_terminates_the_living(
        processes: FakeProcesses, clock: FakeClock) -> None:
    states = StatesDouble()
    supervisor = supervise(processes, clock, states)
    processes.made[-1].die(3)
    supervisor._check_children()
    assert restarts_after(supervisor, processes, clock, 0.5)

    supervisor._stop_all()
    assert processes.made[-1].exitcode == -15
    assert states.states == [("api", "starting"), ("api", "down"), ("api", "starting"),
                             ("api", "stopped")]


def test_the_loop_sleeps_on_the_clock(processes: FakeProcesses, clock: FakeClock,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    supervisor = Supervisor([ChildSpec("api", "api", target=lambda: None)],
                            processes=processes, clock=clock)  # type: ignore[arg-type]
    monkeypatch.setattr("signal.signal", lambda *args: None)  # run() installs handlers

    def sleep(seconds: float) -> None:
        clock.sleeps.append(seconds)
        if len(clock.sleeps) == 3:
            supervisor.request_stop()

    clock.sleep = sleep  # type: ignore[method-assign]
    supervisor.run()
    assert clock.sleeps == [0.2, 0.2, 0.2]
    assert [p.exitcode for p in processes.made] == [-15]  # started once, stopped at the end


class FakeServer:
    """A watched server (the embedded PostgreSQL's stand-in) whose death the test decides."""

    name = "postgres"

    def __init__(self) -> None:
        self.up = True
        self.starts = 0
        self.refuse_starts = 0  # how many restarts fail first (old backends still around)

    def alive(self) -> bool:
        return self.up

    def restart(self) -> None:
        if self.refuse_starts:
            self.refuse_starts -= 1
            raise RuntimeError("pre-existing shared memory block is still in use")
        self.starts += 1
        self.up = True


def test_a_dead_watched_server_is_restarted_after_the_back_off(
        processes: FakeProcesses, clock: FakeClock) -> None:
    server = FakeServer()
    supervisor = Supervisor([], processes=processes, clock=clock,  # type: ignore[arg-type]
                            watched=[server])
    supervisor._check_watched()
    assert server.starts == 0  # alive: left alone

    server.up = False
    supervisor._check_watched()  # notices the death, schedules the restart
    clock.advance(0.25)
    supervisor._check_watched()
    assert server.starts == 0  # not before the back-off
    clock.advance(0.25)
    supervisor._check_watched()
    assert server.starts == 1 and server.alive()


def test_a_watched_server_that_will_not_start_is_tried_again_later(
        processes: FakeProcesses, clock: FakeClock) -> None:
    server = FakeServer()
    supervisor = Supervisor([], processes=processes, clock=clock,  # type: ignore[arg-type]
                            watched=[server])
    server.up, server.refuse_starts = False, 1
    supervisor._check_watched()
    clock.advance(0.5)
    supervisor._check_watched()  # the first try fails: the next one waits longer
    assert server.starts == 0
    clock.advance(restart_delay(2) - 0.25)
    supervisor._check_watched()
    assert server.starts == 0
    clock.advance(0.25)
    supervisor._check_watched()
    assert server.starts == 1 and supervisor.watched[0].restarts == 1


def test_stopping_with_the_catalog_server_dead_records_nothing(
        processes: FakeProcesses, clock: FakeClock) -> None:
    states = StatesDouble()
    server = FakeServer()
    supervisor = Supervisor([ChildSpec("api", "api", target=lambda: None)], states,  # type: ignore[arg-type]
                            processes=processes, clock=clock, watched=[server])  # type: ignore[arg-type]
    supervisor._start(supervisor.children[0])
    server.up = False  # each record would wait for the pool's timeout, then fail
    supervisor._stop_all()
    assert states.states == [("api", "starting")]


def test_a_process_serving_several_components_records_each_of_them(
        processes: FakeProcesses, clock: FakeClock) -> None:
    """``chroma run``'s one worker process serves the indexer, mhb, recommender and
    compactor components: its exit and restart show on every one of them."""
    states = StatesDouble()
    spec = ChildSpec("workers", "worker", target=lambda: None,
                     components=("indexer", "compactor"))
    supervisor = Supervisor([spec], states, processes=processes,  # type: ignore[arg-type]
                            clock=clock)
    supervisor._start(supervisor.children[0])
    processes.made[-1].die(9)
    supervisor._check_children()
    assert states.states == [("indexer", "starting"), ("compactor", "starting"),
                             ("indexer", "down"), ("compactor", "down")]
