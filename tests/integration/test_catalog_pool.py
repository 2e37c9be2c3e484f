"""The catalog's connection pool on a real PostgreSQL: connections a burst opened close
together once unneeded for ``max_idle`` (each is a backend of 15-40 MiB RSS), down to
``min_size``, which may be 0 (``chroma run``'s supervisor)."""

from __future__ import annotations

import threading
import time

import psycopg

from chroma.catalog import Database


def _backends(dsn: str, name: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           (name,)).fetchone()
    assert row is not None
    return int(row[0])


def _backend_pids(dsn: str, name: str) -> set[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                            (name,)).fetchall()
    return {int(row[0]) for row in rows}


def _burst(db: Database, n: int) -> None:
    """``n`` transactions open at once (so the pool grows to ``n`` connections)."""
    barrier = threading.Barrier(n)

    def hold() -> None:
        with db.transaction() as conn:
            conn.execute("SELECT 1")
            barrier.wait(timeout=30)

    threads = [threading.Thread(target=hold) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _wait_for(predicate: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_connections_a_burst_opened_close_together_once_unneeded(own_database_url: str) -> None:
    db = Database(own_database_url, max_size=8, max_idle=1.0, name="pool-test-burst")
    db.open()
    try:
        _burst(db, 8)
        assert _backends(own_database_url, "pool-test-burst") == 8
        # psycopg_pool alone closes one per max_idle period: 7 s to get to 1. Ours closes
        # the surplus at the first period in which it stayed idle throughout (<= 2 s).
        assert _wait_for(lambda: _backends(own_database_url, "pool-test-burst") == 1, 4.5)
        with db.transaction() as conn:  # the one left still serves
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        db.close()


def test_connections_in_use_are_not_closed(own_database_url: str) -> None:
    db = Database(own_database_url, max_size=3, max_idle=0.5, name="pool-test-busy")
    db.open()
    stop = threading.Event()
    failures: list[BaseException] = []

    def keep_two_busy() -> None:
        def hold(barrier: threading.Barrier) -> None:
            try:
                with db.transaction() as conn:
                    conn.execute("SELECT 1")
                    barrier.wait(timeout=30)
                    time.sleep(0.05)
            except BaseException as exc:  # reported by the test below
                failures.append(exc)
                barrier.abort()

        while not stop.is_set() and not failures:
            # A barrier per pair: one broken barrier (a shared one, before) failed every
            # later pair at once, so nothing was held while the test went on passing.
            barrier = threading.Barrier(2)
            pair = [threading.Thread(target=hold, args=(barrier,)) for _ in range(2)]
            for thread in pair:
                thread.start()
            for thread in pair:
                thread.join()

    _burst(db, 3)  # first, alone: the pair beside it made bursts wait on each other
    busy = threading.Thread(target=keep_two_busy)
    busy.start()
    try:
        assert _wait_for(lambda: _backends(own_database_url, "pool-test-busy") == 2)
        time.sleep(2.0)  # four idle periods: the two in use every period stay
        assert _backends(own_database_url, "pool-test-busy") == 2
    finally:
        stop.set()
        busy.join()
        db.close()
    assert not failures, failures


def test_a_pool_of_min_size_zero_keeps_no_connection_while_idle(
        own_database_url: str) -> None:
    db = Database(own_database_url, max_size=2, min_size=0, max_idle=0.5,
                  name="pool-test-zero")
    db.open()
    try:
        db.check()
        assert _backends(own_database_url, "pool-test-zero") == 1
        assert _wait_for(lambda: _backends(own_database_url, "pool-test-zero") == 0)
        db.check()  # and opens one again when asked
    finally:
        db.close()


def test_the_release_after_a_quiet_spell_closes_a_bursts_connections_at_once(
        own_database_url: str) -> None:
    """``chroma run``'s API and workers call ``release_unused(idle=True)`` once they have
    gone quiet after a burst: the surplus connections close then, not after ``max_idle``
    (here an hour); the release after each operation (``idle`` false) leaves them. The
    one kept for ``min_size`` is a new backend (an old one holds every shared buffer it
    read in its RSS)."""
    from chroma.memory import release_unused

    name = "pool-test-release"
    db = Database(own_database_url, max_size=5, max_idle=3600.0, name=name)
    db.open()
    try:
        _burst(db, 5)
        before = _backend_pids(own_database_url, name)
        assert len(before) == 5
        release_unused()
        assert _backend_pids(own_database_url, name) == before
        release_unused(idle=True)
        assert _wait_for(lambda: len(_backend_pids(own_database_url, name)) == 1, 5.0)
        assert not _backend_pids(own_database_url, name) & before
        with db.transaction() as conn:  # the one left still serves, and a burst reopens
            assert conn.execute("SELECT 1").fetchone() == (1,)
        _burst(db, 3)
        assert _backends(own_database_url, "pool-test-release") == 3
    finally:
        db.close()


def test_a_connection_in_use_survives_the_release(own_database_url: str) -> None:
    from chroma.memory import release_unused

    db = Database(own_database_url, max_size=3, min_size=0, max_idle=3600.0,
                  name="pool-test-release-busy")
    db.open()
    try:
        _burst(db, 3)
        with db.transaction() as conn:
            release_unused(idle=True)
            assert _wait_for(
                lambda: _backends(own_database_url, "pool-test-release-busy") == 1, 5.0)
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        db.close()


def test_closing_the_surplus_keeps_the_connection_min_size_asks_for(
        own_database_url: str) -> None:
    """What the idle-release thread does at every quiet interval: the burst's surplus
    goes, the connection kept stays the same one (renewed only after a busy spell)."""
    name = "pool-test-surplus"
    db = Database(own_database_url, max_size=4, max_idle=3600.0, name=name)
    db.open()
    try:
        _burst(db, 4)
        before = _backend_pids(own_database_url, name)
        db.close_surplus()
        after = _backend_pids(own_database_url, name)
        assert len(after) == 1 and after <= before
    finally:
        db.close()
