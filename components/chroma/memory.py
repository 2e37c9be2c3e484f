"""Giving freed memory back to the system, for the long-lived processes of ``chroma run``.

Owns the two allocator knobs the processes share: glibc's ``malloc_trim`` (freed heap
and arena memory stays resident until trimmed: an operation's arrays of tens of MiB,
freed, kept the worker ~150 MiB larger) and pyarrow's memory pool, the allocator
environment ``chroma run`` gives its children (:data:`CHILD_ENVIRONMENT`), and the
release after a busy spell (:func:`start_idle_release`: the API kept ~70 MiB of freed
heap after a 100k bulk ingest; :func:`note_work_ended` and :class:`ReleaseWhenIdle` say
when one ends), and the libraries a service process must not load
(:func:`refuse_unused_imports`). Imports nothing of chroma; pyarrow only when the process
has already loaded it.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

__all__ = ["CHILD_ENVIRONMENT", "UNUSED_IMPORTS", "IdleRelease", "ReleaseWhenIdle",
           "add_quiet_hook", "add_release_hook", "child_environment", "drop_file_pages",
           "note_work_ended", "refuse_unused_imports", "release_unused",
           "start_idle_release"]

log = logging.getLogger(__name__)

CHILD_ENVIRONMENT = {
    # glibc makes up to 8 malloc arenas per core for a threaded process; each keeps its
    # own freed memory, and malloc_trim never gives back the top of any but the main one.
    # Once a large array was freed (glibc then raises its mmap threshold up to 32 MiB),
    # later arrays come from the arenas: after 100k x 128 the workers kept ~55 MiB of
    # freed vectors in their second arena's top (of 132 MiB reserved, 18 MiB in use)
    # that no trim reached. One arena: the API's request threads and the worker loops
    # allocate mostly under the GIL anyway.
    "MALLOC_ARENA_MAX": "1",
    # pyarrow's default pool (mimalloc) kept what an ingest or an operation had freed
    # (~80 MiB in each process after 100k x 128); glibc's gives it back when trimmed.
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    # Not PYTHONMALLOC=malloc, though Python's arenas in the workers held ~50 MB of unused
    # pools after 100k x 128 that no trim reaches: it gave back ~30 MiB there, but a new
    # set's first fill (catalog pages as Python objects) took 9.7 s instead of 5.6 s
    # (bench/new_set.py, medians of 3 pairs), and the API's queries were slower too.
}
"""Allocator settings for ``chroma run``'s API and worker processes (read by glibc at
process start, so set in the parent before it spawns them; a value already in the
environment wins)."""


UNUSED_IMPORTS = ("pandas",)
"""Libraries the API and worker processes never use but would load: pyarrow imports
pandas, when it is installed (here via the ``bench`` extra; often in a data scientist's
environment), the first time it checks whether a value is a pandas object: +55 MiB RSS in
each process and ~1.5 s. Without it pyarrow behaves as in an install without pandas."""


class _Refused:
    """A meta-path finder that says "not installed" for :data:`UNUSED_IMPORTS` (a None
    in ``sys.modules`` does not do: pyarrow's compiled import then gets the None)."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in UNUSED_IMPORTS:
            raise ModuleNotFoundError(f"{name} is not loaded in Chroma's service processes",
                                      name=name)


def refuse_unused_imports() -> None:
    """Make an import of :data:`UNUSED_IMPORTS` fail in this process (as when they are not
    installed), unless already loaded. For the service's long-lived processes only."""
    if not any(isinstance(finder, _Refused) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Refused())  # type: ignore[arg-type]


def child_environment(environ: MutableMapping[str, str]) -> None:
    """Put :data:`CHILD_ENVIRONMENT` into ``environ`` where it has no value yet."""
    for name, value in CHILD_ENVIRONMENT.items():
        environ.setdefault(name, value)


_hooks: list[tuple[weakref.WeakMethod[Callable[[], None]], bool]] = []
_hooks_lock = threading.Lock()


def add_release_hook(method: Callable[[], None], *, idle_only: bool = False) -> None:
    """Have :func:`release_unused` also call ``method`` (a bound method, held weakly: a
    closed engine's hook goes with it), for memory only its owner can give back.
    ``idle_only``: only for the release once the process has gone quiet (:func:
    `start_idle_release`), not the one after each operation: for what costs a little
    to get back (e.g. an idle catalog connection, a PostgreSQL backend)."""
    with _hooks_lock:
        _hooks[:] = [(hook, idle) for hook, idle in _hooks if hook() is not None]
        _hooks.append((weakref.WeakMethod(method), idle_only))  # type: ignore[arg-type]


_quiet_hooks: list[weakref.WeakMethod[Callable[[], None]]] = []


def add_quiet_hook(method: Callable[[], None]) -> None:
    """Have the idle-release thread (:func:`start_idle_release`) call ``method`` (a bound
    method, held weakly) after every interval in which the process was quiet, even when
    too little work went before it for a release: it must be cheap when it has nothing
    to do (e.g. closing the catalog connections a light spell left idle)."""
    with _hooks_lock:
        _quiet_hooks[:] = [hook for hook in _quiet_hooks if hook() is not None]
        _quiet_hooks.append(weakref.WeakMethod(method))  # type: ignore[arg-type]


def _call_quiet_hooks() -> None:
    with _hooks_lock:
        hooks = [hook() for hook in _quiet_hooks]
    _call_each(hooks, "a quiet hook failed")


def _call_each(hooks: list[Callable[[], object] | None], failure: str) -> None:
    """Each live hook (``None``: its object is gone), best effort: memory, not correctness."""
    for hook in hooks:
        if hook is not None:
            try:
                hook()
            except Exception:
                log.debug(failure, exc_info=True)


def release_unused(*, idle: bool = False) -> None:
    """Hand memory freed since the last call back to the system (a few ms; call it when
    an operation or a burst of work has ended, not per request). ``idle``: the process
    has gone quiet, so the ``idle_only`` hooks and the quiet ones run too."""
    if idle:
        _call_quiet_hooks()
    with _hooks_lock:
        hooks = [hook() for hook, idle_only in _hooks if idle or not idle_only]
    _call_each(hooks, "a release hook failed")
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

    Fed the process' CPU time at each check; says "release" when the window since the last
    reading used under ``quiet_fraction`` of a core and at least ``busy_cpu_s`` of CPU was
    spent since the last release. So it never trims in the middle of an ingest burst (a
    trim per commit slowed bulk ingest), and an idle process is not trimmed over and over."""

    def __init__(self, busy_cpu_s: float = 1.0, quiet_fraction: float = 0.05) -> None:
        self.busy_cpu_s = busy_cpu_s
        self.quiet_fraction = quiet_fraction
        self._last: float | None = None
        self._released_at = 0.0
        self.quiet = False
        """Whether the last window was quiet (whatever was spent before it)."""

    def tick(self, cpu_s: float, interval_s: float) -> bool:
        """``cpu_s``: the process' CPU seconds now, ``interval_s`` after the last reading;
        True when it is time to release."""
        last, self._last = self._last, cpu_s
        if last is None:
            self._released_at = cpu_s
            return False
        quiet = self.quiet = cpu_s - last < self.quiet_fraction * interval_s
        if quiet and cpu_s - self._released_at >= self.busy_cpu_s:
            self._released_at = cpu_s
            return True
        return False

    def restart(self, cpu_s: float) -> None:
        """Start the next window at ``cpu_s`` without judging the one that ends here (work
        just ended: whether it was the last of a burst shows in the window after it)."""
        self._last = cpu_s


_idle_release_started = threading.Lock()
_work_ended = threading.Event()


def note_work_ended() -> None:
    """Tell this process' idle-release thread that a unit of work ended (an operation, the
    last request in flight): it looks ``settle_s`` later whether the process has gone
    quiet and releases then, rather than at its next regular check. Costs an event set;
    during a burst the quiet check keeps it from trimming."""
    _work_ended.set()


class ReleaseWhenIdle:
    """ASGI middleware: :func:`note_work_ended` each time the last request in flight ends
    (so an API's freed heap goes back within ``settle_s`` of a burst's end)."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self._in_flight = 0  # the event loop's thread only: no lock needed

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                _work_ended.set()


def start_idle_release(interval_s: float = 5.0, busy_cpu_s: float = 1.0,
                       settle_s: float = 1.0) -> bool:
    """Start (once per process) a daemon thread that calls :func:`release_unused` when a
    busy spell ends (see :class:`IdleRelease`): ``settle_s`` after work is noted ended
    (:func:`note_work_ended`) if that window was quiet, else at a check every
    ``interval_s``. ``interval_s`` <= 0: do nothing. True if this call started it."""
    if interval_s <= 0 or not _idle_release_started.acquire(blocking=False):
        return False
    policy = IdleRelease(busy_cpu_s)

    def check(window_s: float) -> None:
        if policy.tick(time.process_time(), window_s):
            release_unused(idle=True)
        elif policy.quiet:
            _call_quiet_hooks()

    def watch() -> None:
        policy.tick(time.process_time(), interval_s)  # the baseline: start-up is no burst
        while True:
            if not _work_ended.wait(interval_s):
                check(interval_s)
                continue
            _work_ended.clear()
            policy.restart(time.process_time())
            time.sleep(settle_s)
            check(settle_s)

    threading.Thread(target=watch, name="idle-release", daemon=True).start()
    return True


_MADV_PAGEOUT = 21  # linux/mman.h, Linux 5.4+


def drop_file_pages(under: Path) -> int:
    """Reclaim the resident pages of this process' *shared* mappings of files under
    ``under`` (``madvise(MADV_PAGEOUT)``); returns the bytes of mappings advised.

    Dirty pages are written back first, nothing is lost; a page is read back from disk on
    its next access, so this is for files the process has finished with for now, e.g. a
    written write-ahead log. They no longer count in the process' RSS or PSS (nor in the
    page cache). ``MADV_PAGEOUT``, not ``MADV_DONTNEED``: it never discards data, so a
    mapping that another thread replaced between reading the map and advising (e.g. by
    anonymous memory) is safe. A kernel without it refuses: nothing happens."""
    madvise = _madvise()
    if madvise is None:
        return 0
    prefix = str(under).rstrip("/") + "/"
    advised = 0
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        fields = line.split(None, 5)
        if len(fields) < 6 or fields[1][3] != "s" or not fields[5].startswith(prefix):
            continue
        start, end = (int(address, 16) for address in fields[0].split("-"))
        if madvise(start, end - start, _MADV_PAGEOUT) == 0:
            advised += end - start
    return advised


@functools.cache
def _madvise() -> Callable[[int, int, int], int] | None:
    """The C library's ``madvise`` (None where there is none to find)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


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
