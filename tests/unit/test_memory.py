"""chroma.memory: what ``chroma run`` gives its children, and giving freed heap back."""

from __future__ import annotations

import asyncio
import mmap
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chroma import memory
from chroma.memory import (
    CHILD_ENVIRONMENT,
    IdleRelease,
    ReleaseWhenIdle,
    add_release_hook,
    child_environment,
    drop_file_pages,
    release_unused,
    start_idle_release,
)


def test_child_environment_fills_in_defaults_and_keeps_what_is_set() -> None:
    environ = {"MALLOC_ARENA_MAX": "8", "PATH": "/bin"}
    child_environment(environ)
    assert environ["MALLOC_ARENA_MAX"] == "8"  # an operator's choice wins
    assert environ["PATH"] == "/bin"
    for name, value in CHILD_ENVIRONMENT.items():
        if name != "MALLOC_ARENA_MAX":
            assert environ[name] == value


def test_release_unused_runs_with_and_without_pyarrow_loaded() -> None:
    release_unused()  # pyarrow may or may not be loaded by other tests
    probe = ("import sys; from chroma.memory import release_unused; release_unused(); "
             "assert 'pyarrow' not in sys.modules; import pyarrow; release_unused()")
    subprocess.run([sys.executable, "-c", probe], check=True)


# Small blocks (below glibc's mmap threshold) come from the heap; one block allocated last
# pins its top, so free() alone cannot shrink it and the freed pages stay resident. The
# probe prints the RSS (KiB) with that heap freed, then after ``{after}`` ran.
_HEAP_BURST = """
import ctypes, re, time
from chroma.memory import release_unused, start_idle_release
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
{before}
blocks = [libc.malloc(64 * 1024) for _ in range(3200)]  # 200 MiB
for block in blocks:
    ctypes.memset(block, 1, 64 * 1024)
pin = libc.malloc(64 * 1024)
for block in blocks:
    libc.free(block)
freed = rss()
{after}
print(freed, rss())
"""


def _heap_given_back_kib(*, before: str = "", after: str) -> int:
    """KiB of the freed 200 MiB burst the probe process no longer holds after ``after``."""
    probe = _HEAP_BURST.format(before=before, after=after)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, env={"MALLOC_ARENA_MAX": "1"})
    freed_kib, after_kib = map(int, out.stdout.split())
    return freed_kib - after_kib



@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_unused_gives_freed_heap_memory_back() -> None:
    assert _heap_given_back_kib(after="release_unused()") > 150 * 1024


def test_idle_release_waits_for_a_busy_spell_to_end_and_releases_once() -> None:
    policy = IdleRelease(busy_cpu_s=1.0, quiet_fraction=0.05)
    interval = 5.0
    assert not policy.tick(10.0, interval)  # first reading: the baseline
    assert not policy.tick(10.1, interval)  # quiet, but nothing was done since
    assert not policy.tick(14.0, interval)  # busy (3.9 s of CPU in 5 s): never mid-burst
    assert not policy.tick(18.5, interval)  # still busy
    assert policy.tick(18.6, interval)  # quiet after 8.5 s of work: release
    assert not policy.tick(18.6, interval)  # already released: idle stays untouched
    assert not policy.tick(18.7, interval)
    assert not policy.tick(19.0, interval)  # a little work (0.3 s) is not worth a trim
    assert not policy.tick(19.01, interval)
    assert not policy.tick(20.5, interval)  # busy again
    assert policy.tick(20.51, interval)  # 1.9 s since the last release, now quiet


def test_a_window_restarted_when_work_ends_is_judged_on_its_own() -> None:
    """After a note that work ended, the window from there decides: quiet releases, a
    request that followed at once (mid-burst) does not."""
    policy = IdleRelease(busy_cpu_s=1.0, quiet_fraction=0.05)
    assert not policy.tick(10.0, 5.0)  # the baseline
    policy.restart(10.0)
    assert not policy.tick(10.01, 1.0)  # quiet, nothing done yet
    policy.restart(12.0)  # 2 s of work, then it ended
    assert not policy.tick(12.5, 1.0)  # the burst went on: busy, no trim
    policy.restart(12.6)
    assert policy.tick(12.61, 1.0)  # quiet 1 s after the end: release
    policy.restart(12.7)
    assert not policy.tick(12.7, 1.0)  # already released


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_work_noted_ended_releases_within_the_settle_time_not_the_next_check() -> None:
    """The regular check is an hour away: the release comes from the note that work ended
    (a worker's operation, the API's last request in flight)."""
    started = ("from chroma.memory import note_work_ended\n"
               "assert start_idle_release(3600, busy_cpu_s=0.01, settle_s=0.2)")
    wait = ("note_work_ended()\n"
            "deadline = time.monotonic() + 20\n"
            "while rss() > freed - 150 * 1024 and time.monotonic() < deadline:\n"
            "    time.sleep(0.1)")
    assert _heap_given_back_kib(before=started, after=wait) > 150 * 1024


def test_the_middleware_notes_work_ended_when_the_last_request_in_flight_ends() -> None:
    gates = [asyncio.Event(), asyncio.Event()]
    calls = iter(gates)

    async def app(scope: object, receive: object, send: object) -> None:
        await next(calls).wait()

    async def scenario() -> list[bool]:
        middleware = ReleaseWhenIdle(app)
        memory._work_ended.clear()
        scope = {"type": "http"}
        first = asyncio.create_task(middleware(scope, None, None))  # type: ignore[arg-type]
        second = asyncio.create_task(middleware(scope, None, None))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        seen = [memory._work_ended.is_set()]
        gates[0].set()
        await first
        seen.append(memory._work_ended.is_set())  # one still in flight
        gates[1].set()
        await second
        seen.append(memory._work_ended.is_set())
        return seen

    # In a thread of its own: asyncio.run refuses a thread where an earlier test of the
    # session left an event loop marked running (seen in the whole suite, not alone).
    try:
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(asyncio.run, scenario()).result() == [False, False, True]
    finally:
        memory._work_ended.clear()


def test_start_idle_release_is_off_at_zero() -> None:
    assert start_idle_release(0) is False




@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_idle_release_gives_a_bursts_freed_heap_back_once_quiet() -> None:
    """A burst of work, then quiet: the watcher thread gives the freed heap back without
    anyone calling release_unused."""
    started = ("assert start_idle_release(0.2, busy_cpu_s=0.01)\n"
               "assert not start_idle_release(0.2, busy_cpu_s=0.01)  # once per process")
    wait = ("deadline = time.monotonic() + 20\n"
            "while rss() > freed - 150 * 1024 and time.monotonic() < deadline:\n"
            "    time.sleep(0.1)")
    assert _heap_given_back_kib(before=started, after=wait) > 150 * 1024


def _resident_kib(path: Path) -> int:
    """This process' RSS of its mappings of ``path``."""
    total, mine = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split(None, 5)
        if len(fields) >= 5 and "-" in fields[0] and not fields[0].endswith(":"):
            mine = len(fields) > 5 and fields[5].strip() == str(path)
        elif mine and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(sys.platform != "linux", reason="/proc and madvise are Linux's")
def test_drop_file_pages_reclaims_shared_pages_and_keeps_their_data(tmp_path: Path) -> None:
    size = 16 * 2**20
    shared_file, private_file = tmp_path / "wal" / "segment", tmp_path / "private"
    shared_file.parent.mkdir()
    for path in (shared_file, private_file):
        path.write_bytes(b"\0" * size)
    with shared_file.open("r+b") as a, private_file.open("r+b") as b:
        shared = mmap.mmap(a.fileno(), size, flags=mmap.MAP_SHARED)
        private = mmap.mmap(b.fileno(), size, flags=mmap.MAP_PRIVATE)
        pattern = bytes(range(256)) * (size // 256)
        shared[:] = pattern  # dirty, not yet written back
        private[:] = pattern
        assert _resident_kib(shared_file) >= 15 * 1024
        assert drop_file_pages(tmp_path / "wal") == size
        assert drop_file_pages(tmp_path) == size  # the private mapping is never advised
        assert _resident_kib(shared_file) < 1024
        assert _resident_kib(private_file) >= 15 * 1024
        assert private[:] == pattern  # a private copy keeps what it held
        assert shared[:] == pattern  # read back from the file
        shared.close()
        private.close()
    assert shared_file.read_bytes() == pattern  # nothing written was lost


def test_release_unused_calls_the_hooks_of_live_owners_only() -> None:
    calls: list[str] = []

    class Owner:
        def __init__(self, name: str) -> None:
            self.name = name
            add_release_hook(self.release)

        def release(self) -> None:
            calls.append(self.name)

        def failing(self) -> None:
            raise RuntimeError("best effort")

    kept, gone = Owner("kept"), Owner("gone")
    add_release_hook(kept.failing)  # a failing hook stops neither the others nor the trim
    del gone
    release_unused()
    assert calls == ["kept"]


def test_idle_only_hooks_run_only_in_the_release_of_a_quiet_process() -> None:
    """What costs a little to get back (a catalog connection) waits for the quiet process,
    not the release after each operation."""
    calls: list[str] = []

    class Owner:
        def every(self) -> None:
            calls.append("every")

        def idle(self) -> None:
            calls.append("idle")

    owner = Owner()
    add_release_hook(owner.every)
    add_release_hook(owner.idle, idle_only=True)
    release_unused()
    assert calls == ["every"]
    release_unused(idle=True)
    assert calls == ["every", "every", "idle"]


def test_refused_imports_fail_and_pyarrow_works_without_them() -> None:
    probe = ("import sys; from chroma.memory import UNUSED_IMPORTS, refuse_unused_imports; "
             "refuse_unused_imports(); import numpy as np, pyarrow as pa; "
             "assert pa.array(np.arange(3, dtype=np.float32)).to_pylist() == [0, 1, 2]; "
             "assert pa.table({'a': [1]}).num_rows == 1; "
             "assert not any(sys.modules.get(name) for name in UNUSED_IMPORTS)\n"
             "try:\n    import pandas\nexcept ImportError:\n    pass\n"
             "else:\n    raise AssertionError('pandas was imported')")
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_without_refusing_pyarrow_loads_pandas_when_installed() -> None:
    """Why the refusal exists (skipped where pandas is not installed)."""
    pytest.importorskip("pandas")
    probe = ("import sys, numpy as np, pyarrow as pa; pa.array(np.zeros(1)); "
             "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True"


def test_quiet_hooks_run_at_every_quiet_interval_without_a_busy_spell() -> None:
    """Connections a light spell left idle close once the process is quiet, though too
    little work went before for a release (which needs ``busy_cpu_s`` of CPU)."""
    probe = ("import time\n"
             "from chroma.memory import add_quiet_hook, start_idle_release\n"
             "class Owner:\n"
             "    calls = 0\n"
             "    def hook(self):\n"
             "        self.calls += 1\n"
             "owner = Owner()\n"
             "add_quiet_hook(owner.hook)\n"
             "start_idle_release(0.1, busy_cpu_s=3600)\n"
             "time.sleep(1.5)\n"
             "print(owner.calls)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert int(out.stdout) >= 3


# A 30 MiB block, mmapped and freed, raises glibc's dynamic mmap threshold to 30 MiB (and
# its trim threshold to 60 MiB): later blocks below that come from the heap. A thread's
# heap is another arena than the main one: malloc_trim gives back free chunks inside an
# arena and the main arena's top, never another arena's top. The probe prints its RSS
# (KiB) before a thread's 48 MiB burst and after it was freed and release_unused() ran.
_THREAD_BURST = """
import ctypes, re, threading
from chroma.memory import release_unused
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
big = libc.malloc(30 << 20)
ctypes.memset(big, 1, 30 << 20)
libc.free(big)
def burst():
    blocks = [libc.malloc(2 << 20) for _ in range(24)]
    for block in blocks:
        ctypes.memset(block, 1, 2 << 20)
    for block in reversed(blocks):
        libc.free(block)
before = rss()
worker = threading.Thread(target=burst)
worker.start()
worker.join()
release_unused()
print(before, rss())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_with_the_child_environment_a_threads_freed_heap_is_given_back() -> None:
    """The worker process kept ~55 MiB of vectors an operation had freed in its second
    arena's heap after 100k x 128 (release_unused gave back 4 MiB of it): with the
    allocator environment ``chroma run`` gives its children, it is given back."""
    out = subprocess.run([sys.executable, "-c", _THREAD_BURST], capture_output=True,
                         text=True, check=True, env=dict(CHILD_ENVIRONMENT))
    before_kib, after_kib = map(int, out.stdout.split())
    assert after_kib - before_kib < 8 * 1024, "most of the 48 MiB burst is still resident"
