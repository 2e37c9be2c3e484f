"""Connection pool and migrations. psycopg errors become :class:`Unavailable` here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from urllib.parse import quote, urlencode, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool
from psycopg_pool.pool import AddConnection

from chroma.errors import ChromaError, Unavailable
from chroma.memory import add_quiet_hook, add_release_hook

__all__ = ["Database", "apply_migrations"]

log = logging.getLogger(__name__)


CONNECT_TIMEOUT_S = 3
"""libpq's bound on opening one connection (an unreachable host must not hang a request)."""


IDLE_CONNECTION_S = 30.0
"""Pooled connections unused this long are closed (down to the pool's ``min_size``).
Holding one costs a PostgreSQL backend of 15-45 MiB; opening them again after a pause
makes the next burst of requests wait (the pool opens one at a time), so the API keeps
30 s; the worker process, where only an operation's start waits, uses less."""


class _Pool(ConnectionPool):
    """A pool that closes *every* connection nobody needed during the last ``max_idle``
    seconds, not one per period as psycopg_pool does.

    Each connection is a PostgreSQL backend of ~15 MiB RSS idle (~40 MiB once it has read
    the shared buffers). A burst (start-up, an ingest) opens up to ``max_size``; closing
    one per 30 s left an idle ``chroma run`` holding the burst's backends for minutes.
    The pool counts the fewest connections that sat idle at any moment of the period
    (``_nconns_min``): that many were surplus all along. psycopg_pool's own shrink task
    calls this; the attributes are private to psycopg_pool (pinned in constraints.txt),
    so ``tests/integration/test_catalog_pool.py`` checks the behaviour.
    """

    def _shrink_pool(self) -> None:
        self._close_idle(lambda waiting: min(self._nconns_min, waiting))

    def close_idle(self, *, renew: bool = False) -> int:
        """Close every connection waiting in the pool now, down to ``min_size`` (those in
        use stay); returns how many closed. ``renew``: the waiting ones kept for
        ``min_size`` are replaced by new connections (opened in the background)."""
        closed = self._close_idle(lambda waiting: waiting)
        if renew:
            with self._lock:
                stale = [self._pool.popleft() for _ in range(len(self._pool))]
                self._nconns_min = 0
            for conn in stale:  # _nconns unchanged: each is replaced
                self._close_connection(conn)
                self.run_task(AddConnection(self))
        return closed

    def _close_idle(self, closable: Callable[[int], int]) -> int:
        """Close ``closable(connections waiting in the pool)`` of them, down to ``min_size``."""
        with self._lock:
            surplus = max(0, min(closable(len(self._pool)), self._nconns - self._min_size,
                                 len(self._pool)))
            to_close = [self._pool.popleft() for _ in range(surplus)]
            self._nconns -= surplus
            self._nconns_min = len(self._pool)
        if to_close:
            log.debug("closing %d idle catalog connections (%d left)", surplus, self._nconns)
        for conn in to_close:
            self._close_connection(conn)
        return surplus


class Database:
    """A psycopg connection pool with one translation of connection failures.

    ``connect_timeout`` bounds how long a caller waits for a pooled connection. It is
    short (seconds) because a dead server shows up here: the pool keeps trying to
    reconnect in the background while callers wait, and a request that waited 10 s for a
    503 held its client and, on shutdown, its worker for as long.
    """

    def __init__(self, dsn: str, *, max_size: int = 8, min_size: int = 1,
                 connect_timeout: float = 5.0, max_idle: float = IDLE_CONNECTION_S,
                 name: str = "chroma") -> None:
        """``min_size`` connections stay open while idle (0: none, for a process that
        writes seldom); the rest close once unneeded for ``max_idle`` seconds. ``name``
        is the connections' ``application_name`` (``pg_stat_activity`` says whose they
        are)."""
        self.dsn = dsn
        self.name = name
        self.pool = _Pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            max_idle=max_idle,
            timeout=connect_timeout,
            open=False,
            kwargs={"autocommit": False, "connect_timeout": CONNECT_TIMEOUT_S,
                    "application_name": name},
            check=ConnectionPool.check_connection,
        )

    def open(self, *, wait: bool = True) -> None:
        try:
            self.pool.open(wait=wait, timeout=30)
        except psycopg_pool_errors() as exc:
            raise Unavailable(f"catalog database not reachable: {exc}") from exc
        # Once the process has gone quiet (``chroma.memory``'s idle-release thread, in
        # chroma run's API and worker processes), its surplus connections close then,
        # not up to two ``max_idle`` periods later: each is a backend of ~30 MiB RSS once
        # it has read the shared buffers; 3 of 5 were still open after a 100k ingest.
        # After a busy spell the connection kept is also replaced by a new one.
        add_quiet_hook(self.close_surplus)
        add_release_hook(self.close_idle, idle_only=True)

    def close_surplus(self) -> None:
        """Close the pool's idle connections beyond ``min_size`` now."""
        closed = self.pool.close_idle()
        if closed:
            log.debug("%s: closed %d idle catalog connections", self.name, closed)

    def close_idle(self) -> None:
        """Close the pool's idle connections beyond ``min_size`` now, and replace those
        kept by new ones: a backend keeps in its RSS every shared buffer it has read
        (~31 MiB after a 100k ingest against ~15 MiB new); the next request on it pays
        the backend's cache warm-up, a few ms, once after a quiet spell."""
        closed = self.pool.close_idle(renew=True)
        if closed:
            log.debug("%s: closed %d idle catalog connections", self.name, closed)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self, *, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A connection inside one transaction, committed on success, rolled back on error.

        ``timeout`` overrides the pool's wait for a connection (the readiness probe's).
        """
        try:
            with self.pool.connection(timeout=timeout) as conn:
                yield conn
        except ChromaError:
            raise
        except psycopg.OperationalError as exc:
            raise Unavailable(f"catalog database error: {exc}") from exc
        except psycopg_pool_errors() as exc:
            raise Unavailable(f"catalog database not reachable: {exc}") from exc

    def check(self, *, timeout: float = 2.0) -> None:
        """Raise :class:`Unavailable` unless the server answers within ``timeout`` seconds."""
        with self.transaction(timeout=timeout) as conn:
            conn.execute("SELECT 1")


def psycopg_pool_errors() -> tuple[type[Exception], ...]:
    from psycopg_pool import PoolTimeout

    return (PoolTimeout, psycopg.OperationalError)


def apply_migrations(dsn: str) -> list[str]:
    """Apply pending migrations (idempotent, safe from several processes); returns their ids."""
    directory = resources.files("chroma.catalog") / "migrations"
    from yoyo import get_backend, read_migrations  # only where migrations run

    backend = get_backend(_yoyo_uri(dsn))
    migrations = read_migrations(str(directory))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    applied = [m.id for m in pending]
    if applied:
        log.info("applied catalog migrations: %s", ", ".join(applied))
    return applied


def _yoyo_uri(dsn: str) -> str:
    """yoyo wants ``postgresql+psycopg://`` URIs; accept any libpq DSN (URI or key=value)."""
    params = conninfo_to_dict(dsn)
    user = quote(str(params.pop("user", "") or ""), safe="")
    password = quote(str(params.pop("password", "") or ""), safe="")
    host = str(params.pop("host", "") or "")
    port = params.pop("port", None)
    dbname = quote(str(params.pop("dbname", "") or ""), safe="")
    netloc = user + (f":{password}" if password else "") + ("@" if user else "")
    if host.startswith("/"):
        params["host"] = host  # a unix-socket directory travels as a query argument
    else:
        netloc += host + (f":{port}" if port else "")
    if port and host.startswith("/"):
        params["port"] = port
    query = urlencode({k: str(v) for k, v in params.items()})
    return urlunsplit(("postgresql+psycopg", netloc, f"/{dbname}", query, ""))
