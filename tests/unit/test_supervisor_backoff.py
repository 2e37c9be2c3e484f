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
