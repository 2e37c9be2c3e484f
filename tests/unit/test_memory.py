"""chroma.memory: what ``chroma run`` gives its children, and giving freed heap back."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from chroma.memory import CHILD_ENVIRONMENT, child_environment, release_unused


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
# pins its top, so free() alone cannot shrink it and the freed pages stay resident.
_HEAP_PROBE = """
import ctypes, re, sys
from chroma.memory import release_unused
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
blocks = [libc.malloc(64 * 1024) for _ in range(3200)]  # 200 MiB
for block in blocks:
    ctypes.memset(block, 1, 64 * 1024)
pin = libc.malloc(64 * 1024)
for block in blocks:
    libc.free(block)
freed = rss()
release_unused()
print(freed, rss())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_unused_gives_freed_heap_memory_back() -> None:
    out = subprocess.run([sys.executable, "-c", _HEAP_PROBE], capture_output=True,
                         text=True, check=True, env={"MALLOC_ARENA_MAX": "1"})
    freed_kib, after_kib = map(int, out.stdout.split())
    assert freed_kib - after_kib > 150 * 1024, out.stdout
