"""Giving freed memory back to the system, for the long-lived processes of ``chroma run``.

Owns the two allocator knobs the processes share: glibc's ``malloc_trim`` (freed heap
and arena memory stays resident until trimmed: an operation's arrays of tens of MiB,
freed, kept the worker ~150 MiB larger) and pyarrow's memory pool, the allocator
environment ``chroma run`` gives its children (:data:`CHILD_ENVIRONMENT`), and the
release after a busy spell (:func:`start_idle_release`: the API kept ~70 MiB of freed
heap after a 100k bulk ingest). Imports nothing of chroma; pyarrow only when the process
has already loaded it.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, MutableMapping

__all__ = ["CHILD_ENVIRONMENT", "IdleRelease", "child_environment", "release_unused",
           "start_idle_release"]

log = logging.getLogger(__name__)

CHILD_ENVIRONMENT = {
    # glibc makes up to 8 malloc arenas per core for a threaded process; each keeps its
    # own freed memory. The API's request threads and the worker loops allocate from
    # many threads, and two arenas (one per core here) held what sixteen did.
    "MALLOC_ARENA_MAX": "2",
    # pyarrow's default pool (mimalloc) kept what an ingest or an operation had freed
    # (~80 MiB in each process after 100k x 128); glibc's gives it back when trimmed.
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}
"""Allocator settings for ``chroma run``'s API and worker processes (read by glibc at
process start, so set in the parent before it spawns them; a value already in the
environment wins)."""


def child_environment(environ: MutableMapping[str, str]) -> None:
    """Put :data:`CHILD_ENVIRONMENT` into ``environ`` where it has no value yet."""
    for name, value in CHILD_ENVIRONMENT.items():
        environ.setdefault(name, value)


def release_unused() -> None:
    """Hand memory freed since the last call back to the system (a few ms; call it when
    an operation or a burst of work has ended, not per request)."""
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        try:
            pool = pyarrow.default_memory_pool()
            if pool.backend_name != "system":  # the system pool's is the trim below
                pool.release_unused()
        except Exception:  # best effort: memory, not correctness
            log.debug("pyarrow's pool did not release memory", exc_info=True)
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class IdleRelease:
    """When to release: once after a busy spell, when the process has gone quiet.

    Fed the process' CPU time every ``interval_s``; says "release" when the last interval
    used under ``quiet_fraction`` of a core and at least ``busy_cpu_s`` of CPU was spent
    since the last release. So it never trims in the middle of an ingest burst (a trim
    per commit slowed bulk ingest), and an idle process is not trimmed over and over."""

    def __init__(self, busy_cpu_s: float = 1.0, quiet_fraction: float = 0.05) -> None:
        self.busy_cpu_s = busy_cpu_s
        self.quiet_fraction = quiet_fraction
        self._last: float | None = None
        self._released_at = 0.0

    def tick(self, cpu_s: float, interval_s: float) -> bool:
        """``cpu_s``: the process' CPU seconds now; True when it is time to release."""
        last, self._last = self._last, cpu_s
        if last is None:
            self._released_at = cpu_s
            return False
        quiet = cpu_s - last < self.quiet_fraction * interval_s
        if quiet and cpu_s - self._released_at >= self.busy_cpu_s:
            self._released_at = cpu_s
            return True
        return False


_idle_release_started = threading.Lock()


def start_idle_release(interval_s: float = 5.0, busy_cpu_s: float = 1.0) -> bool:
    """Start (once per process) a daemon thread that calls :func:`release_unused` when a
    busy spell ends (see :class:`IdleRelease`); ``interval_s`` <= 0: do nothing. True if
    this call started it."""
    if interval_s <= 0 or not _idle_release_started.acquire(blocking=False):
        return False
    policy = IdleRelease(busy_cpu_s)

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if policy.tick(time.process_time(), interval_s):
                release_unused()

    threading.Thread(target=watch, name="idle-release", daemon=True).start()
    return True


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None on a C library without it, e.g. musl)."""
    try:
        function = ctypes.CDLL(None).malloc_trim  # the C library the interpreter uses
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]
