"""A hand-driven :class:`chroma.clock.Clock` for unit tests of leases, heartbeats and back-off.

Time moves only when a test calls :meth:`FakeClock.advance`. ``wait`` blocks until its
event is set or the fake time reaches its deadline, so a test decides exactly when a
heartbeat or a poll fires, and no test sleeps for real. ``sleep`` is recorded and moves
time at once (the supervisor's loop sleeps between checks).
"""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]

_EVENT_POLL_S = 0.002
"""How often a blocked ``wait`` looks at its event (a ``threading.Event`` cannot notify a
foreign condition). It bounds the latency of ``done.set()``; it is not a test sleep."""


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._changed = threading.Condition()
        self._waiters = 0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._changed:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._changed:
            self._now += seconds
            self._changed.notify_all()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        with self._changed:
            deadline = self._now + timeout
            self._waiters += 1
            self._changed.notify_all()
            try:
                while not event.is_set() and self._now < deadline:
                    self._changed.wait(_EVENT_POLL_S)
                return event.is_set()
            finally:
                self._waiters -= 1
                self._changed.notify_all()

    def wait_for_waiters(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until ``count`` threads wait on this clock (so an advance reaches them)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._waiters >= count, timeout):
                raise AssertionError(f"{count} waiter(s) expected, {self._waiters} waiting")
