"""The time source of the control loops (leases, heartbeats, back-off), injectable.

The worker's lease heartbeat and polling and the supervisor's restart back-off read the
clock and wait through a :class:`Clock` rather than ``time`` and ``Event.wait``
directly, so their tests can drive time by hand (a fake clock) instead of sleeping.
Production code uses :data:`SYSTEM_CLOCK`, which is exactly the calls it replaced.
Timing that lives in SQL (``now()`` in the operations queue) is not covered: it is the
database's clock, shared by every worker.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    """Monotonic time and the two ways a loop waits on it."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout`` seconds passed; True if it was set."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.sleep`` and ``Event.wait``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(timeout)


SYSTEM_CLOCK: Clock = SystemClock()
