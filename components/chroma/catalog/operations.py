"""The operations queue and component heartbeats, in SQL.

Workers claim operations with a lease (``FOR UPDATE SKIP LOCKED``) and extend it by
heartbeat; an operation whose lease expired (its worker died) is claimable again, up to
``max_attempts``. Only the lease owner can finish an operation, so a worker that lost
its lease cannot overwrite the result of the one that took over.

No lost wake-ups (DESIGN.md section 12): :meth:`Operations.enqueue` joins a *queued*
operation of the same kind and set (it has not read the change feed yet, so it covers
the caller's change), but never a *running* one, which may have read the feed already:
it marks that one ``rerun_requested`` instead, and the run's end queues a new operation
in the same transaction (:func:`_queue_reruns`). The mark lives in the catalog, so it
holds across API replicas and worker restarts.

A dependency outage (:meth:`Operations.defer`) puts an operation back in the queue
without spending an attempt, after :func:`outage_retry_delay_s`, until it has lasted
longer than the give-up bound.
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

__all__ = [
    "ComponentRow", "Operation", "Operations", "json_safe", "outage_retry_delay_s", "retry_delay_s",
]

TERMINAL = ("succeeded", "failed", "cancelled")


def retry_delay_s(attempts: int) -> float:
    """Back-off before a failed operation may be claimed again: 2, 4, 8 ... seconds.

    The policy is here, in Python, so it can be tested alone; the clock it is added to is
    the database's ``now()`` (see :meth:`Operations.finish`), shared by every worker."""
    return 2.0 ** attempts


def outage_retry_delay_s(retries: int, cap_s: float) -> float:
    """Wait before trying again an operation whose dependency is unreachable: 1, 2, 4 ...
    seconds, at most ``cap_s`` (so a dependency that comes back is noticed within
    ``cap_s``). ``retries`` is how many times it was put back for this outage so far."""
    return min(2.0 ** min(retries, 30), cap_s)


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
    rerun_requested: bool = False
    """A change was committed while it ran: its end queues another run."""
    outage_since: datetime | None = None
    """Its dependency has been unreachable since then (None: no outage)."""
    outage_retries: int = 0
    """Times it was put back for the current outage (attempts not spent)."""

    def __post_init__(self) -> None:
        # Rows stored before the API bounded numbers must still list (and claim).
        object.__setattr__(self, "params", json_safe(self.params))
        object.__setattr__(self, "result", json_safe(self.result))


def json_safe(value: Any) -> Any:
    """``value`` (read from ``jsonb``) with every integer orjson cannot write as a float.

    ``jsonb`` keeps any number and gives ``1e20`` back as a 21-digit integer; orjson writes
    only 64-bit integers, so one such row used to make its listing a 500 for good."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        try:
            return float(value)
        except OverflowError:
            return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


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
        """Queue an operation, unless one of the same kind and set is active.

        A queued one is returned as it is (it will read everything committed before this
        call). A running one may have read the change feed already: it is marked
        ``rerun_requested``, so that its end queues another run. Returns (operation, created).
        """
        while True:
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
                        (kind, embedding_set_key, Jsonb(params or {}), requested_by,
                         max_attempts),
                    ).fetchone()
                except psycopg.errors.CheckViolation:
                    # The schema's CHECK lists the kinds (tested equal to chroma.operations.kinds).
                    raise InvalidInput(f"unknown operation kind {kind!r}") from None
                if row is not None:
                    return Operation(**row), True
                # The row lock orders this against the run's end (finish, release, defer):
                # either the mark is set before the end reads it, or the operation is no
                # longer active here and the loop queues a new one.
                row = cur.execute(
                    "UPDATE operations SET rerun_requested = rerun_requested OR state = 'running'"
                    " WHERE kind = %s AND COALESCE(embedding_set_key, '') = COALESCE(%s, '')"
                    " AND state IN ('queued', 'running') RETURNING *",
                    (kind, embedding_set_key),
                ).fetchone()
            if row is not None:
                return Operation(**row), False

    def claim(self, owner: str, kinds: Sequence[str], lease_s: float) -> Operation | None:
        """Take the oldest claimable operation of ``kinds`` (queued, or its lease expired)."""
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            # A cancelled operation whose worker vanished is simply cancelled.
            ended = cur.execute(
                "UPDATE operations SET state = 'cancelled', finished_at = now(),"
                " lease_owner = NULL WHERE state = 'running' AND lease_expires_at < now()"
                " AND cancel_requested RETURNING id"
            ).fetchall()
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
            _queue_reruns(cur, [r["id"] for r in (*ended, *lost)])
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
                # This run reads the feed after this commit: it covers earlier marks.
                " rerun_requested = false, message = NULL WHERE id = %s RETURNING *",
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
                " rerun_requested = false, message = 'interrupted by shutdown; queued again'"
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
                " outage_since = NULL, outage_retries = 0,"
                " rerun_requested = rerun_requested AND NOT %s,"
                " result = %s, error = %s WHERE id = %s",
                ("queued" if retry else state, retry, retry, retry_delay_s(row[0]), state,
                 retry, Jsonb(result) if result else None, error, op_id),
            )
            conn.execute(
                "UPDATE operation_runs SET outcome = %s, finished_at = now()"
                " WHERE operation_id = %s AND owner = %s AND finished_at IS NULL",
                (state, op_id, owner),
            )
            if not retry:  # a retry reads the feed again: it covers a mark itself
                _queue_reruns(conn.cursor(row_factory=dict_row), [op_id])
        return True

    def defer(
        self, op_id: int, owner: str, reason: str, *, delay_s: float, giveup_s: float,
        waiting_for: str = "the query engine",
    ) -> str:
        """Put back an operation whose dependency is unreachable, without spending an
        attempt: ``deferred`` (claimable again after ``delay_s``), ``gave-up`` (failed:
        the outage has lasted ``giveup_s`` already) or ``lost`` (not the lease owner).

        The outage is timed by the database's clock from the first deferral, so it spans
        workers and restarts."""
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT outage_since IS NOT NULL"
                " AND now() - outage_since >= make_interval(secs => %s) AS give_up,"
                " EXTRACT(EPOCH FROM now() - COALESCE(outage_since, now())) AS lasted"
                " FROM operations WHERE id = %s AND lease_owner = %s AND state = 'running'"
                " FOR UPDATE",
                (giveup_s, op_id, owner),
            ).fetchone()
            if row is None:
                return "lost"
            if row["give_up"]:
                cur.execute(
                    "UPDATE operations SET state = 'failed', lease_owner = NULL,"
                    " lease_expires_at = NULL, finished_at = now(), error = %s,"
                    " message = NULL WHERE id = %s",
                    (f"gave up: {waiting_for} was unreachable for {float(row['lasted']):.0f} s"
                     f" (CHROMA_OPERATION_OUTAGE_GIVEUP_S={giveup_s:g}): {reason}", op_id),
                )
                outcome = "failed"
            else:
                cur.execute(
                    "UPDATE operations SET state = 'queued', lease_owner = NULL,"
                    " lease_expires_at = NULL, attempts = GREATEST(attempts - 1, 0),"
                    " retry_at = now() + make_interval(secs => %(d)s),"
                    " outage_since = COALESCE(outage_since, now()),"
                    " outage_retries = outage_retries + 1, rerun_requested = false,"
                    " message = 'waiting for ' || %(w)s || ': ' || %(r)s || '; retry at '"
                    "  || to_char((now() + make_interval(secs => %(d)s)) AT TIME ZONE 'UTC',"
                    "             'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                    "  || ', giving up after ' || %(g)s || ' s of outage'"
                    " WHERE id = %(id)s",
                    {"d": delay_s, "w": waiting_for, "r": reason, "g": f"{giveup_s:g}",
                     "id": op_id},
                )
                outcome = "unreachable"
            cur.execute(
                "UPDATE operation_runs SET outcome = %s, finished_at = now()"
                " WHERE operation_id = %s AND owner = %s AND finished_at IS NULL",
                (outcome, op_id, owner),
            )
            if outcome == "failed":
                _queue_reruns(cur, [op_id])
        return "gave-up" if outcome == "failed" else "deferred"

    def wants_wakeup(self, kind: str, embedding_set_key: str) -> bool:
        """Nothing of ``kind`` is queued or running for the set, and its last one did not
        fail or get cancelled (a give-up waits for the next change, or a person)."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT state FROM operations WHERE kind = %s AND embedding_set_key = %s"
                " ORDER BY id DESC LIMIT 1", (kind, embedding_set_key),
            ).fetchone()
        return row is None or row[0] == "succeeded"

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
        embedding_set_key: str | None = None, limit: int = 100, before: int | None = None,
    ) -> list[Operation]:
        """Newest first; ``before``: only operations older than that id (the next page)."""
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT * FROM operations WHERE (%(s)s::text IS NULL OR state = %(s)s)"
                " AND (%(k)s::text IS NULL OR kind = %(k)s)"
                " AND (%(e)s::text IS NULL OR embedding_set_key = %(e)s)"
                " AND (%(b)s::bigint IS NULL OR id < %(b)s)"
                " ORDER BY id DESC LIMIT %(l)s",
                {"s": state, "k": kind, "e": embedding_set_key, "l": limit, "b": before},
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


def _queue_reruns(cur: psycopg.Cursor[Any], op_ids: Sequence[int]) -> None:
    """Queue a new run of each ended operation that was asked to run again meanwhile
    (``rerun_requested``); call in the transaction that ended them."""
    if not op_ids:
        return
    cur.execute(
        "INSERT INTO operations (kind, embedding_set_key, params, requested_by, max_attempts)"
        " SELECT kind, embedding_set_key, params, 'rerun of #' || id, max_attempts"
        " FROM operations WHERE id = ANY(%s) AND rerun_requested"
        " AND state IN ('succeeded', 'failed', 'cancelled') ORDER BY id"
        " ON CONFLICT DO NOTHING",
        (list(op_ids),),
    )
