"""The embedded PostgreSQL's watchdog script (``chroma.catalog._pgwatch.WATCHDOG``) on
stand-in processes: it stops the process it watches once its owner's pipe closes, and
only if it is still the same process; while the pipe is open it does nothing. (Against a
real server: ``tests/integration/test_embedded_postgres.py``.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from chroma.catalog._pgwatch import process_alive, start_ticks, watchdog_command


def _watch(pid: int, ticks: int | None) -> tuple[subprocess.Popen[bytes], int]:
    read_fd, write_fd = os.pipe()
    watchdog = subprocess.Popen(watchdog_command(pid, ticks), stdin=read_fd,
                                stderr=subprocess.PIPE, start_new_session=True)
    os.close(read_fd)
    return watchdog, write_fd


def _server() -> subprocess.Popen[bytes]:
    """A stand-in postmaster: exits 3 on SIGINT (PostgreSQL's fast shutdown)."""
    code = ("import signal, sys, time; signal.signal(signal.SIGINT, lambda *_: sys.exit(3)); "
            "print('up', flush=True); time.sleep(120)")
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert server.stdout is not None and server.stdout.readline() == b"up\n"
    return server


def test_the_owner_gone_the_watched_process_gets_a_fast_shutdown() -> None:
    server = _server()
    watchdog, owner = _watch(server.pid, start_ticks(server.pid))
    try:
        time.sleep(0.5)
        assert server.poll() is None and watchdog.poll() is None  # owner alive: nothing
        os.close(owner)  # as the kernel does when the owner dies, however
        assert server.wait(30) == 3
        assert watchdog.wait(30) == 0
        assert watchdog.stderr is not None
        assert f"stopping postmaster {server.pid}" in watchdog.stderr.read().decode()
    finally:
        server.kill()
        watchdog.kill()


def test_a_process_that_is_not_the_one_watched_is_left_alone() -> None:
    """Same pid, other start ticks (a recycled pid): not signalled."""
    server = _server()
    ticks = start_ticks(server.pid)
    assert ticks is not None
    watchdog, owner = _watch(server.pid, ticks + 1)
    try:
        os.close(owner)
        assert watchdog.wait(30) == 0
        assert process_alive(server.pid, ticks)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()


def test_a_watchdog_whose_server_is_gone_exits_at_the_owners_close() -> None:
    server = _server()
    ticks = start_ticks(server.pid)
    server.kill()
    server.wait()
    watchdog, owner = _watch(server.pid, ticks)
    os.close(owner)
    assert watchdog.wait(30) == 0
