"""The operations queue and component heartbeats, in SQL.

Workers claim operations with a lease (``FOR UPDATE SKIP LOCKED``) and extend it by
heartbeat; an operation whose lease expired (its worker died) is claimable again, up to
``max_attempts``. Only the lease owner can finish an operation, so a worker that lost
its lease cannot overwrite the result of the one that took over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from chroma.catalog.database import Database
from chroma.errors import Conflict, InvalidInput, NotFound

__all__ = ["ComponentRow", "Operation", "Operations", "retry_delay_s"]

TERMINAL = ("succeeded", "failed", "cancelled")


def retry_delay_s(attempts: int) -> float:
    """Back-off before a failed operation may be claimed again: 2, 4, 8 ... seconds.

    The policy is here, in Python, so it can be tested alone; the clock it is added to is
    the database's ``now()`` (see :meth:`Operations.finish`), shared by every worker."""
    return 2.0 ** attempts


@dataclass(frozen=True)
class Operation:
    id: int
    kind: str
    embedding_set_key: str | None
    params: dict[str, Any]
    state: str
    progress: float
    message: str | None
    attempts: int
    max_attempts: int
    requested_by: str
    cancel_requested: bool
    lease_owner: str | None
    lease_expires_at: datetime | None
    retry_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True)
class ComponentRow:
    name: str
    kind: str
    pid: int | None
    host: str | None
    state: str
    started_at: datetime | None
    heartbeat_at: datetime | None
    restarts: int
    kinds: list[str]
    last_error: str | None


class Operations:
    """Queue operations: enqueue (coalescing), claim, heartbeat, finish, cancel, list."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def enqueue(
        self,
        kind: str,
        embedding_set_key: str | None = None,
        *,
        params: dict[str, Any] | None = None,
        requested_by: str = "api",
        max_attempts: int = 3,
    ) -> tuple[Operation, bool]:
        """Queue an operation; if one of the same kind and set is active, return it instead.

        Returns (operation, created).
        """
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            if embedding_set_key is not None:
                known = cur.execute(
                    "SELECT 1 FROM embedding_sets WHERE key = %s", (embedding_set_key,)
                ).fetchone()
                if known is None:
                    raise NotFound(f"no embedding set {embedding_set_key}")
            try:
                row = cur.execute(
                    "INSERT INTO operations (kind, embedding_set_key, params, requested_by,"
                    " max_attempts) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (kind, COALESCE(embedding_set_key, ''))"
                    " WHERE state IN ('queued', 'running') DO NOTHING RETURNING *",
                    (kind, embedding_set_key, Jsonb(params or {}), requested_by, max_attempts),
                ).fetchone()
            except psycopg.errors.CheckViolation:
                # The schema's CHECK lists the kinds (tested equal to chroma.operations.kinds).
                raise InvalidInput(f"unknown operation kind {kind!r}") from None
            if row is not None:
                return Operation(**row), True
            row = cur.execute(
                "SELECT * FROM operations WHERE kind = %s"
                " AND COALESCE(embedding_set_key, '') = COALESCE(%s, '')"
                " AND state IN ('queued', 'running')",
                (kind, embedding_set_key),
            ).fetchone()
        if row is None:  # it finished between the two statements: queue afresh
            return self.enqueue(kind, embedding_set_key, params=params,
                                requested_by=requested_by, max_attempts=max_attempts)
        return Operation(**row), False

    def claim(self, owner: str, kinds: Sequence[str], lease_s: float) -> Operation | None:
        """Take the oldest claimable operation of ``kinds`` (queued, or its lease expired)."""
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            # A cancelled operation whose worker vanished is simply cancelled.
            cur.execute(
                "UPDATE operations SET state = 'cancelled', finished_at = now(),"
                " lease_owner = NULL WHERE state = 'running' AND lease_expires_at < now()"
                " AND cancel_requested"
            )
            # Operations whose worker vanished too often give up instead of looping.
            lost = cur.execute(
                "UPDATE operations SET state = 'failed', finished_at = now(),"
                " error = 'worker lost ' || attempts || ' times; giving up', lease_owner = NULL"
                " WHERE state = 'running' AND lease_expires_at < now()"
                " AND attempts >= max_attempts RETURNING id"
            ).fetchall()
            if lost:
                cur.execute(
                    "UPDATE operation_runs SET outcome = 'lost', finished_at = now()"
                    " WHERE operation_id = ANY(%s) AND finished_at IS NULL",
                    ([r["id"] for r in lost],),
                )
            row = cur.execute(
                "SELECT id, state FROM operations WHERE kind = ANY(%s) AND ("
                "  state = 'queued' OR (state = 'running' AND lease_expires_at < now()))"
                " AND NOT cancel_requested AND (retry_at IS NULL OR retry_at <= now())"
                " ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                (list(kinds),),
            ).fetchone()
            if row is None:
                return None
            if row["state"] == "running":  # the previous worker's lease ran out
                cur.execute(
                    "UPDATE operation_runs SET outcome = 'lost', finished_at = now()"
                    " WHERE operation_id = %s AND finished_at IS NULL", (row["id"],),
                )
            claimed = cur.execute(
                "UPDATE operations SET state = 'running', lease_owner = %s,"
                " lease_expires_at = now() + make_interval(secs => %s),"
                " attempts = attempts + 1, started_at = COALESCE(started_at, now()),"
                " message = NULL WHERE id = %s RETURNING *",
                (owner, lease_s, row["id"]),
            ).fetchone()
            cur.execute(
                "INSERT INTO operation_runs (operation_id, attempt, owner) VALUES (%s, %s, %s)",
                (claimed["id"], claimed["attempts"], owner),
            )
        return Operation(**claimed)

    def heartbeat(
        self, op_id: int, owner: str, lease_s: float,
        progress: float | None = None, message: str | None = None,
    ) -> str:
        """Extend the lease and report progress: ``ok``, ``cancel`` (asked) or ``lost``."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "UPDATE operations SET lease_expires_at = now() + make_interval(secs => %s),"
                " progress = COALESCE(%s, progress), message = COALESCE(%s, message)"
                " WHERE id = %s AND lease_owner = %s AND state = 'running'"
                " RETURNING cancel_requested",
                (lease_s, progress, message, op_id, owner),
            ).fetchone()
        if row is None:
            return "lost"
        return "cancel" if row[0] else "ok"

    def release(self, op_id: int, owner: str) -> bool:
        """Give an operation back to the queue (graceful shutdown); not counted as a failure."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "UPDATE operations SET state = 'queued', lease_owner = NULL,"
                " lease_expires_at = NULL, attempts = GREATEST(attempts - 1, 0),"
                " message = 'interrupted by shutdown; queued again'"
                " WHERE id = %s AND lease_owner = %s AND state = 'running' RETURNING id",
                (op_id, owner),
            ).fetchone()
            conn.execute(
                "UPDATE operation_runs SET outcome = 'interrupted', finished_at = now()"
                " WHERE operation_id = %s AND owner = %s AND finished_at IS NULL",
                (op_id, owner),
            )
        return row is not None

    def finish(
        self, op_id: int, owner: str, state: str, *,
        result: dict[str, Any] | None = None, error: str | None = None,
        retryable: bool = True,
    ) -> bool:
        """Record the outcome, if ``owner`` still holds the lease.

        A retryable failure goes back to the queue (until ``max_attempts``) and waits
        :func:`retry_delay_s` (2, 4, 8 ... seconds) before it can be claimed again."""
        assert state in TERMINAL
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT attempts, max_attempts FROM operations"
                " WHERE id = %s AND lease_owner = %s AND state = 'running' FOR UPDATE",
                (op_id, owner),
            ).fetchone()
            if row is None:
                return False
            retry = retryable and state == "failed" and row[0] < row[1]
            conn.execute(
                "UPDATE operations SET state = %s, lease_owner = NULL, lease_expires_at = NULL,"
                " finished_at = CASE WHEN %s THEN NULL ELSE now() END,"
                " retry_at = CASE WHEN %s THEN now() + make_interval(secs => %s) END,"
                " progress = CASE WHEN %s = 'succeeded' THEN 1 ELSE progress END,"
                " result = %s, error = %s WHERE id = %s",
                ("queued" if retry else state, retry, retry, retry_delay_s(row[0]), state,
                 Jsonb(result) if result else None, error, op_id),
            )
            conn.execute(
                "UPDATE operation_runs SET outcome = %s, finished_at = now()"
                " WHERE operation_id = %s AND owner = %s AND finished_at IS NULL",
                (state, op_id, owner),
            )
        return True

    def cancel(self, op_id: int) -> Operation:
        """Cancel: a queued operation at once; a running one when its worker next checks."""
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "UPDATE operations SET"
                " state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,"
                " finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,"
                " cancel_requested = true WHERE id = %s RETURNING *",
                (op_id,),
            ).fetchone()
        if row is None:
            raise NotFound(f"no operation {op_id}")
        if row["state"] in ("succeeded", "failed"):
            raise Conflict(f"operation {op_id} already {row['state']}")
        return Operation(**row)

    def get(self, op_id: int) -> Operation:
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM operations WHERE id = %s", (op_id,)).fetchone()
        if row is None:
            raise NotFound(f"no operation {op_id}")
        return Operation(**row)

    def list(
        self, *, state: str | None = None, kind: str | None = None,
        embedding_set_key: str | None = None, limit: int = 100,
    ) -> list[Operation]:
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT * FROM operations WHERE (%(s)s::text IS NULL OR state = %(s)s)"
                " AND (%(k)s::text IS NULL OR kind = %(k)s)"
                " AND (%(e)s::text IS NULL OR embedding_set_key = %(e)s)"
                " ORDER BY id DESC LIMIT %(l)s",
                {"s": state, "k": kind, "e": embedding_set_key, "l": limit},
            ).fetchall()
        return [Operation(**row) for row in rows]

    def runs(self, op_id: int) -> list[dict[str, Any]]:
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT attempt, owner, started_at, finished_at, outcome FROM operation_runs"
                " WHERE operation_id = %s ORDER BY id", (op_id,),
            ).fetchall()

    def queue_depth(self) -> dict[str, int]:
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT kind, count(*) FROM operations WHERE state = 'queued' GROUP BY kind"
            ).fetchall()
        return {kind: int(n) for kind, n in rows}

    def counts_by_state(self) -> dict[tuple[str, str], int]:
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT kind, state, count(*) FROM operations GROUP BY kind, state"
            ).fetchall()
        return {(kind, state): int(n) for kind, state, n in rows}

    # -- components -----------------------------------------------------------------------

    def component_heartbeat(
        self, name: str, kind: str, *, pid: int, host: str, kinds: Sequence[str] = (),
        state: str = "up", started_at: datetime | None = None,
    ) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO components (name, kind, pid, host, state, started_at, heartbeat_at,"
                " kinds) VALUES (%s, %s, %s, %s, %s, COALESCE(%s, now()), now(), %s)"
                " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, pid = EXCLUDED.pid,"
                " host = EXCLUDED.host, state = EXCLUDED.state, heartbeat_at = now(),"
                " kinds = EXCLUDED.kinds,"
                " started_at = CASE WHEN components.pid IS DISTINCT FROM EXCLUDED.pid"
                "   THEN COALESCE(%s, now()) ELSE components.started_at END",
                (name, kind, pid, host, state, started_at, list(kinds), started_at),
            )

    def component_state(
        self, name: str, kind: str, state: str, *, restarts: int | None = None,
        last_error: str | None = None, pid: int | None = None,
    ) -> None:
        """The supervisor's view of a child: starting, up, down, backoff, stopped."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO components (name, kind, state, restarts, last_error, pid, started_at)"
                " VALUES (%s, %s, %s, COALESCE(%s, 0), %s, %s, now())"
                " ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state,"
                " restarts = COALESCE(%s, components.restarts),"
                " last_error = COALESCE(EXCLUDED.last_error, components.last_error),"
                " pid = COALESCE(EXCLUDED.pid, components.pid),"
                # A (re)starting process has not said it is alive yet.
                " heartbeat_at = CASE WHEN EXCLUDED.state = 'starting' THEN NULL"
                "   ELSE components.heartbeat_at END,"
                " started_at = CASE WHEN EXCLUDED.state = 'starting' THEN now()"
                "   ELSE components.started_at END",
                (name, kind, state, restarts, last_error, pid, restarts),
            )

    def components(self) -> list[ComponentRow]:
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute("SELECT * FROM components ORDER BY kind, name").fetchall()
        return [ComponentRow(**row) for row in rows]
