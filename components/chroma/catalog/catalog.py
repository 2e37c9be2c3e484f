"""Catalog queries: one method per question or change, each its own transaction.

The write path calls :meth:`Catalog.commit_files` while its parquet files are being
written; that single transaction adds the manifest rows and upserts the record index,
and commits only once the files are durable, so a crash leaves at worst an orphan file
(removed by the sweep in ``chroma.ingest.compaction``), never an acknowledged record
that is missing.

Files in flight are protected by **claims** (table ``file_claims``): a writer claims each
path (:meth:`Catalog.claim_files`, committed) before it writes the file; the transaction
that records the file takes the claim (deletes it) and refuses to commit without it. The
sweep keeps every path that is in the manifest or claimed, and may delete a claimed file
only once it has deleted the expired claim itself (:meth:`Catalog.expire_claims`). One
claim row, deleted by exactly one party, decides each file's fate: a sweep can never
remove a file a commit still references, whatever the processes, clocks or crashes.

PostgreSQL refusing a record's data (``psycopg.DataError``: e.g. a NUL byte in a string)
becomes :class:`InvalidInput`, so the write path can tell a bad request from an outage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from chroma.catalog.changes import Changes, head_seq_sql, writing_changes
from chroma.catalog.copying import copy_csv, pg_text_array
from chroma.catalog.database import Database
from chroma.catalog.keyprefix import check_key_prefix, pick_key
from chroma.catalog.live import LiveRecords
from chroma.catalog.operations import Operations, json_safe
from chroma.catalog.recommendations import Recommendations
from chroma.catalog.records import STORED_RECORD_COLUMNS, StoredRecord
from chroma.errors import Conflict, InvalidInput, NotFound, Unavailable
from chroma.keys import embedding_set_key

if TYPE_CHECKING:  # numpy and pyarrow load only where rows are built: the supervisor
    import pyarrow as pa  # and idle workers use the catalog without them

__all__ = [
    "Catalog",
    "CommitOutcome",
    "DatasetInfo",
    "EmbeddingSetInfo",
    "FileCommit",
]

CLAIM_LEASE_S = 3600.0
"""How long a claim protects a file being written (seconds, on the database's clock).

Not a correctness bound: a writer slower than its lease finds its claim gone and fails
its commit (503, nothing acknowledged); the lease only bounds how long the file of a
writer that crashed stays in the store."""


@dataclass(frozen=True)
class EmbeddingSetInfo:
    key: str
    fields: dict[str, Any]
    dimension: int | None
    distance: str
    created_at: datetime
    first_log: datetime | None
    last_log: datetime | None
    counts: dict[str, int]


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    name: str
    embedding_set_key: str | None
    split: str
    record_count: int
    retention_days: int | None
    created_at: datetime
    last_log: datetime | None
    description: str | None = None


@dataclass(frozen=True)
class FileCommit:
    """One parquet file and the index columns of its rows (row i = index i)."""

    dataset_id: int
    path: str
    size_bytes: int
    record_ids: list[str]
    input_uris: list[str | None]
    inference_classes: list[str | None]
    label_classes: list[str | None]
    tags: list[list[str]]
    logged_at: datetime


@dataclass(frozen=True)
class CommitOutcome:
    file_id: int
    inserted: int
    updated: int


_RECORD_ROWS = (
    f"SELECT {STORED_RECORD_COLUMNS}"
    " FROM records r JOIN datasets d ON d.id = r.dataset_id JOIN files f ON f.id = r.file_id"
)
"""Every :class:`StoredRecord` of the record index; callers add the WHERE clause."""

_INCOMING_COLUMNS = [
    "record_id", "row_index", "input_uri", "inference_class", "label_class", "tags"]
_INCOMING = """
CREATE TEMP TABLE IF NOT EXISTS incoming (
    record_id text, row_index integer, input_uri text, inference_class text,
    label_class text, tags text[]
) ON COMMIT DELETE ROWS
"""


class Catalog:
    """Typed access to the catalog tables through a :class:`Database` pool."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # The repositories of the other tables, built once, sharing the pool.
        self.changes = Changes(db)
        self.queue = Recommendations(db)
        self.operations = Operations(db)
        self.live = LiveRecords(db)

    # -- embedding sets and datasets ---------------------------------------------------

    def bind(
        self, key: str, fields: dict[str, Any], dimension: int, dataset: str, split: str
    ) -> int:
        """The dataset's id, registering the embedding set and dataset on first use.

        The set's dimension is fixed by its first record; a dataset is bound to one set and
        one split. One transaction: a refused request leaves nothing behind.
        """
        with _refusing_bad_data("the embedding set or dataset"), \
                self.db.transaction() as conn:
            self._ensure_embedding_set(conn, key, fields)
            (stored_dimension,) = conn.execute(
                "UPDATE embedding_sets SET dimension = COALESCE(dimension, %s) WHERE key = %s"
                " RETURNING dimension",
                (dimension, key),
            ).fetchone()
            if stored_dimension != dimension:
                raise InvalidInput(
                    f"embedding has dimension {dimension} but embedding set {key} "
                    f"({json.dumps(fields, sort_keys=True)}) has dimension {stored_dimension}"
                )
            return self._ensure_dataset(conn, dataset, key, split)

    def register_dataset(
        self, name: str, *, split: str, embedding_set: dict[str, Any] | None = None,
        retention_days: int | None = None, description: str | None = None,
    ) -> tuple[DatasetInfo, bool]:
        """Create or update a dataset before any record (the operator's Dataset resource).

        Returns (dataset, created). Split and embedding set cannot change once bound."""
        key = embedding_set_key(embedding_set) if embedding_set else None
        with self.db.transaction() as conn:
            existed = conn.execute(
                "SELECT 1 FROM datasets WHERE name = %s", (name,)
            ).fetchone() is not None
            if key is not None:
                assert embedding_set is not None
                self._ensure_embedding_set(conn, key, embedding_set)
            self._ensure_dataset(conn, name, key, split)
            conn.execute(
                "UPDATE datasets SET retention_days = %s,"
                " description = COALESCE(%s, description) WHERE name = %s",
                (retention_days, description, name),
            )
        return self.get_dataset(name), not existed

    @staticmethod
    def _ensure_embedding_set(conn: psycopg.Connection, key: str, fields: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO embedding_sets (key, fields) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
            (key, json.dumps(fields)),
        )

    @staticmethod
    def _ensure_dataset(
        conn: psycopg.Connection, dataset: str, key: str | None, split: str
    ) -> int:
        conn.execute(
            "INSERT INTO datasets (name, embedding_set_key, split) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO NOTHING",
            (dataset, key, split),
        )
        dataset_id, bound_key, bound_split = conn.execute(
            "SELECT id, embedding_set_key, split FROM datasets WHERE name = %s FOR UPDATE",
            (dataset,),
        ).fetchone()
        if bound_key is None and key is not None:  # registered ahead of its first record
            conn.execute("UPDATE datasets SET embedding_set_key = %s WHERE id = %s",
                         (key, dataset_id))
        elif key is not None and bound_key != key:
            raise Conflict(
                f"dataset {dataset!r} belongs to embedding set {bound_key}, not {key}; "
                "use another dataset name for this embedding set"
            )
        if bound_split != split:
            raise Conflict(
                f"dataset {dataset!r} holds {bound_split} records, not {split}; "
                "use another dataset name for this split"
            )
        return int(dataset_id)

    def list_embedding_sets(
        self, *, after: str | None = None, limit: int | None = None
    ) -> list[EmbeddingSetInfo]:
        """Embedding sets in key order: all, or a page of ``limit`` after key ``after``."""
        return self._embedding_sets(after=after, limit=limit)

    def get_embedding_set(self, key: str) -> EmbeddingSetInfo:
        found = self._embedding_sets(key)
        if not found:
            raise NotFound(f"no embedding set {key}")
        return found[0]

    def resolve_key(self, prefix: str) -> str:
        """The full key of the one embedding set whose key starts with ``prefix``
        (404 for none, 422 for several or a prefix too short: :func:`pick_key`)."""
        check_key_prefix(prefix)
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT key, count(*) OVER () FROM embedding_sets"
                " WHERE starts_with(key, %s) ORDER BY key = %s DESC, key LIMIT 3",
                (prefix, prefix),
            ).fetchall()
        return pick_key(prefix, [r[0] for r in rows], int(rows[0][1]) if rows else 0)

    def _embedding_sets(
        self, key: str | None = None, *, after: str | None = None, limit: int | None = None
    ) -> list[EmbeddingSetInfo]:
        """Every embedding set with its record counts per split, or the one keyed ``key``."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT e.key, e.fields, e.dimension, e.distance, e.created_at, e.first_log,"
                " e.last_log,"
                " COALESCE(SUM(d.record_count) FILTER (WHERE d.split = 'training'), 0),"
                " COALESCE(SUM(d.record_count) FILTER (WHERE d.split = 'production'), 0)"
                " FROM embedding_sets e LEFT JOIN datasets d ON d.embedding_set_key = e.key"
                " WHERE (%(key)s::text IS NULL OR e.key = %(key)s)"
                " AND (%(after)s::text IS NULL OR e.key > %(after)s)"
                " GROUP BY e.key ORDER BY e.key LIMIT %(limit)s",
                {"key": key, "after": after, "limit": limit},
            ).fetchall()
        return [
            EmbeddingSetInfo(
                key=r[0], fields=json_safe(r[1]), dimension=r[2], distance=r[3],
                created_at=r[4],
                first_log=r[5], last_log=r[6],
                counts={"training": int(r[7]), "production": int(r[8])},
            )
            for r in rows
        ]

    def list_datasets(
        self, embedding_set_key: str | None = None, *, after: str | None = None,
        limit: int | None = None,
    ) -> list[DatasetInfo]:
        """Datasets in name order (of one set, if given): all, or a page of ``limit``
        after name ``after``."""
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT * FROM datasets WHERE (%(key)s::text IS NULL OR embedding_set_key ="
                " %(key)s) AND (%(after)s::text IS NULL OR name > %(after)s)"
                " ORDER BY name LIMIT %(limit)s",
                {"key": embedding_set_key or None, "after": after, "limit": limit},
            ).fetchall()
        return [DatasetInfo(**row) for row in rows]

    def get_dataset(self, name: str) -> DatasetInfo:
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM datasets WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no dataset named {name!r}")
        return DatasetInfo(**row)

    # -- the write path ----------------------------------------------------------------

    def commit_files(
        self, commits: Sequence[FileCommit],
        *, files_durable: Callable[[], Sequence[int]] | None = None,
    ) -> list[CommitOutcome]:
        """Record files and upsert their records, all in one transaction.

        ``files_durable``, when given, is called last before COMMIT: it waits until the
        files are durable and returns their sizes in bytes (which replace the commits'
        ``size_bytes``), so the caller's file writes overlap the catalog work. If it
        raises, nothing is committed.

        Every path must have been claimed (:meth:`claim_files`); the claims are taken
        first, so a sweep that comes for them meanwhile waits for this transaction. A
        claim gone (expired and swept) is :class:`Unavailable` and commits nothing. Data
        PostgreSQL refuses is :class:`InvalidInput`.
        """
        with _refusing_bad_data("a record"), self.db.transaction() as conn:
            _take_claims(conn, [commit.path for commit in commits])
            writing_changes(conn)
            _lock_sets_then_datasets(conn, [commit.dataset_id for commit in commits])
            outcomes = [self._commit_one(conn, commit) for commit in commits]
            if files_durable is not None:
                sizes = files_durable()
                with conn.cursor() as cur:
                    cur.executemany(
                        "UPDATE files SET size_bytes = %s WHERE id = %s",
                        [(size, o.file_id) for size, o in zip(sizes, outcomes, strict=True)])
            return outcomes

    def _commit_one(self, conn: psycopg.Connection, commit: FileCommit) -> CommitOutcome:
        file_id = conn.execute(
            "INSERT INTO files (dataset_id, path, row_count, size_bytes) VALUES (%s, %s, %s, %s)"
            " RETURNING id",
            (commit.dataset_id, commit.path, len(commit.record_ids), commit.size_bytes),
        ).fetchone()[0]
        rows = record_index_rows(commit, file_id)
        inserted = self._copy_new_records(conn, rows)
        if inserted is None:  # some ids exist already: the (slower) upsert path
            inserted = self._upsert_records(conn, commit, file_id, rows)
        conn.execute(
            "UPDATE datasets SET record_count = record_count + %s, last_log = %s WHERE id = %s",
            (inserted, commit.logged_at, commit.dataset_id),
        )
        conn.execute(
            "UPDATE embedding_sets SET first_log = COALESCE(first_log, %(t)s), last_log = %(t)s"
            " WHERE key = (SELECT embedding_set_key FROM datasets WHERE id = %(d)s)",
            {"t": commit.logged_at, "d": commit.dataset_id},
        )
        return CommitOutcome(
            file_id=int(file_id), inserted=inserted, updated=rows.num_rows - inserted
        )

    @staticmethod
    def _copy_new_records(conn: psycopg.Connection, rows: pa.Table) -> int | None:
        """COPY straight into ``records`` when every id is new (first loads, fresh ids):
        about twice as fast as the upsert. None if an id exists (nothing was written)."""
        try:
            with conn.transaction(), conn.cursor() as cur:
                copy_csv(cur, "records", rows)
        except psycopg.errors.UniqueViolation:
            return None
        return rows.num_rows

    @staticmethod
    def _upsert_records(
        conn: psycopg.Connection, commit: FileCommit, file_id: int, rows: pa.Table
    ) -> int:
        """Insert new ids and replace existing ones; returns how many were new."""
        with conn.cursor() as cur:
            cur.execute(_INCOMING)
            copy_csv(cur, "incoming", rows.select(_INCOMING_COLUMNS))
            inserted_flags = cur.execute(
                "INSERT INTO records (dataset_id, record_id, file_id, row_index, input_uri,"
                " inference_class, label_class, tags, logged_at)"
                " SELECT %(dataset_id)s, record_id, %(file_id)s, row_index, input_uri,"
                " inference_class, label_class, COALESCE(tags, '{}'), %(logged_at)s"
                " FROM incoming"
                " ON CONFLICT (dataset_id, record_id) DO UPDATE SET"
                " file_id = EXCLUDED.file_id, row_index = EXCLUDED.row_index,"
                " input_uri = EXCLUDED.input_uri, inference_class = EXCLUDED.inference_class,"
                " label_class = EXCLUDED.label_class, tags = EXCLUDED.tags,"
                " logged_at = EXCLUDED.logged_at, change_seq = nextval('change_seq')"
                " RETURNING (xmax = 0)",
                {"dataset_id": commit.dataset_id, "file_id": file_id,
                 "logged_at": commit.logged_at},
            ).fetchall()
            cur.execute("TRUNCATE incoming")
        return sum(1 for (flag,) in inserted_flags if flag)

    # -- reading records ---------------------------------------------------------------

    def list_records(
        self, dataset: str, *, after: str | None = None, limit: int = 100
    ) -> list[StoredRecord]:
        """A page of a dataset's live records in id order (keyset pagination)."""
        info = self.get_dataset(dataset)
        with self.db.transaction() as conn:
            rows = conn.execute(
                _RECORD_ROWS +
                " WHERE r.dataset_id = %s AND (%s::text IS NULL OR r.record_id > %s)"
                " ORDER BY r.record_id LIMIT %s",
                (info.id, after, after, limit),
            ).fetchall()
        return [StoredRecord(*row) for row in rows]

    def get_records(self, dataset: str, record_ids: Sequence[str]) -> list[StoredRecord]:
        info = self.get_dataset(dataset)
        with self.db.transaction() as conn:
            rows = conn.execute(
                _RECORD_ROWS +
                " WHERE r.dataset_id = %s AND r.record_id = ANY(%s)",
                (info.id, list(record_ids)),
            ).fetchall()
        return [StoredRecord(*row) for row in rows]

    # -- changes to records ------------------------------------------------------------

    def delete_records(self, dataset: str, record_ids: Sequence[str]) -> list[str]:
        """Delete records; returns the ids that existed. Deletions are logged for the index."""
        info = self.get_dataset(dataset)
        with self.db.transaction() as conn:
            writing_changes(conn)
            return _delete_where(conn, info.id, "record_id = ANY(%s)", list(record_ids))

    def tag_records(
        self,
        dataset: str,
        record_ids: Sequence[str],
        *,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
    ) -> list[str]:
        """Add and remove tags; returns the ids that exist. Each change takes a new change_seq."""
        info = self.get_dataset(dataset)
        with self.db.transaction() as conn:
            writing_changes(conn)
            rows = conn.execute(
                "UPDATE records SET change_seq = nextval('change_seq'), tags = ARRAY("
                "  SELECT DISTINCT t FROM unnest(tags || %s::text[]) AS t"
                "  WHERE NOT (t = ANY(%s::text[])) ORDER BY t)"
                " WHERE dataset_id = %s AND record_id = ANY(%s) RETURNING record_id",
                (list(add), list(remove), info.id, list(record_ids)),
            ).fetchall()
        return [r[0] for r in rows]

    def expire_records(self, dataset: str, older_than: datetime) -> int:
        """Delete a dataset's records logged before ``older_than`` (retention); returns count."""
        info = self.get_dataset(dataset)
        with self.db.transaction() as conn:
            writing_changes(conn)
            return len(_delete_where(conn, info.id, "logged_at < %s", older_than))

    def set_retention(self, dataset: str, days: int | None) -> None:
        with self.db.transaction() as conn:
            updated = conn.execute(
                "UPDATE datasets SET retention_days = %s WHERE name = %s", (days, dataset)
            ).rowcount
        if not updated:
            raise NotFound(f"no dataset named {dataset!r}")

    def index_freshness(self) -> list[dict[str, Any]]:
        """Per embedding set: what the index holds against the latest change."""
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT e.key AS embedding_set_key, i.version AS index_version,"
                " COALESCE(i.indexed_count, 0) AS indexed_count,"
                " COALESCE(i.indexed_seq, 0) AS indexed_seq,"
                f" {head_seq_sql('e.key')} AS latest_seq,"
                " i.updated_at AS index_updated_at,"
                " (SELECT max(m.version) FROM mhb_models m WHERE m.embedding_set_key = e.key)"
                "   AS mhb_version"
                " FROM embedding_sets e LEFT JOIN index_state i ON i.embedding_set_key = e.key"
                " ORDER BY e.key"
            ).fetchall()

    # -- compaction and sweeps ------------------------------------------------------------

    def small_files(self, dataset_id: int, max_rows: int) -> list[tuple[int, str]]:
        """Live files of a dataset with fewer than ``max_rows`` rows, oldest first."""
        with self.db.transaction() as conn:
            return [
                (int(r[0]), r[1])
                for r in conn.execute(
                    "SELECT id, path FROM files WHERE dataset_id = %s AND retired_at IS NULL"
                    " AND row_count < %s ORDER BY id",
                    (dataset_id, max_rows),
                ).fetchall()
            ]

    def live_rows(self, file_ids: Sequence[int]) -> list[tuple[str, int, int]]:
        """(record_id, file_id, row_index) of the records whose live version is in the files."""
        with self.db.transaction() as conn:
            return [
                (r[0], int(r[1]), int(r[2]))
                for r in conn.execute(
                    "SELECT record_id, file_id, row_index FROM records WHERE file_id = ANY(%s)"
                    " ORDER BY file_id, row_index",
                    (list(file_ids),),
                ).fetchall()
            ]

    def swap_files(
        self,
        dataset_id: int,
        old_file_ids: Sequence[int],
        new_path: str,
        new_size: int,
        moves: Sequence[tuple[str, int, int, int]],
    ) -> int:
        """Atomic manifest swap: ``moves`` = (record_id, old_file_id, old_row, new_row).

        A record changed since the compactor read it (it now lives in a newer file) is
        left alone; the old files are retired, not deleted, so in-flight readers finish.
        ``new_path`` must have been claimed (:meth:`claim_files`), as for
        :meth:`commit_files`. Returns how many records moved; if none did (a concurrent
        compaction moved them first), the new file is retired at once.
        """
        with self.db.transaction() as conn:
            _take_claims(conn, [new_path])
            (new_id,) = conn.execute(
                "INSERT INTO files (dataset_id, path, row_count, size_bytes)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                (dataset_id, new_path, len(moves), new_size),
            ).fetchone()
            moved = conn.execute(
                "UPDATE records r SET file_id = %s, row_index = m.new_row"
                " FROM unnest(%s::text[], %s::bigint[], %s::int[], %s::int[])"
                "   AS m(record_id, old_file, old_row, new_row)"
                " WHERE r.dataset_id = %s AND r.record_id = m.record_id"
                "   AND r.file_id = m.old_file AND r.row_index = m.old_row",
                (
                    new_id,
                    [m[0] for m in moves], [m[1] for m in moves],
                    [m[2] for m in moves], [m[3] for m in moves],
                    dataset_id,
                ),
            ).rowcount
            retire = [*old_file_ids, new_id] if moved == 0 else list(old_file_ids)
            conn.execute("UPDATE files SET retired_at = now() WHERE id = ANY(%s)", (retire,))
        return moved

    def retire_files(self, file_ids: Sequence[int]) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE files SET retired_at = now() WHERE id = ANY(%s)", (list(file_ids),)
            )

    def retired_files(self, older_than_s: float) -> list[tuple[int, str]]:
        with self.db.transaction() as conn:
            return [
                (int(r[0]), r[1])
                for r in conn.execute(
                    "SELECT id, path FROM files WHERE retired_at < now() - make_interval("
                    "secs => %s) AND NOT EXISTS (SELECT 1 FROM records WHERE file_id = files.id)",
                    (older_than_s,),
                ).fetchall()
            ]

    def forget_files(self, file_ids: Sequence[int]) -> list[tuple[int, str]]:
        """Drop manifest rows of files no record points at; returns those dropped (id,
        path). The check is here, in the DELETE, since ``records`` has no foreign key."""
        with self.db.transaction() as conn:
            return [(int(r[0]), r[1]) for r in conn.execute(
                "DELETE FROM files WHERE id = ANY(%s)"
                " AND NOT EXISTS (SELECT 1 FROM records WHERE file_id = files.id)"
                " RETURNING id, path", (list(file_ids),),
            ).fetchall()]

    # -- housekeeping --------------------------------------------------------------------

    def drop_lost_file(self, file_id: int) -> list[str]:
        """Repair after a file vanished from the store behind our back: delete the records
        whose live version was in it (logged as deletions, so the index and the queue drop
        them too) and forget the file. Returns the ids of the records lost."""
        with self.db.transaction() as conn:
            writing_changes(conn)
            dataset = conn.execute(
                "SELECT dataset_id FROM files WHERE id = %s", (file_id,)).fetchone()
            if dataset is None:
                return []  # forgotten meanwhile (a sweep after a concurrent compaction)
            lost = _delete_where(conn, int(dataset[0]), "file_id = %s", file_id)
            conn.execute("DELETE FROM files WHERE id = %s", (file_id,))
        return lost

    # -- claims on files being written (see the module docstring) -------------------------

    def claim_files(self, paths: Sequence[str], *, lease_s: float = CLAIM_LEASE_S) -> None:
        """Claim ``paths`` before writing them; committed when this returns."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO file_claims (path, expires_at)"
                " SELECT unnest(%s::text[]), now() + make_interval(secs => %s)",
                (list(paths), lease_s),
            )

    def release_claims(self, paths: Sequence[str]) -> list[str]:
        """Give up claims after a failed write or commit; returns the paths released,
        whose files the caller may delete. A path whose claim was taken by a commit that
        did go through (e.g. the connection dropped during COMMIT) is not returned."""
        return self._delete_claims("path = ANY(%s)", list(paths))

    def expire_claims(self) -> list[str]:
        """Delete expired claims (writers that crashed, or outlived their lease); returns
        their paths, whose files no commit can reference any more."""
        return self._delete_claims("expires_at < now()", None)

    def _delete_claims(self, condition: str, value: object) -> list[str]:
        params = () if value is None else (value,)
        with self.db.transaction() as conn:
            return [r[0] for r in conn.execute(
                f"DELETE FROM file_claims WHERE {condition} RETURNING path", params,
            ).fetchall()]

    # -- housekeeping --------------------------------------------------------------------

    def known_file_paths(self) -> set[str]:
        """Paths the sweep must keep: every file the manifest knows (live, or retired but
        not yet removed) and every claimed one. One statement, so one snapshot: a commit
        that turns a claim into a manifest row is seen either before or after, whole."""
        with self.db.transaction() as conn:
            return {r[0] for r in conn.execute(
                "SELECT path FROM files UNION ALL SELECT path FROM file_claims").fetchall()}


def _take_claims(conn: psycopg.Connection, paths: Sequence[str]) -> None:
    """Delete the claims on ``paths`` in the committing transaction, or refuse to commit."""
    taken = {r[0] for r in conn.execute(
        "DELETE FROM file_claims WHERE path = ANY(%s) RETURNING path", (list(paths),),
    ).fetchall()}
    missing = sorted(set(paths) - taken)
    if missing:
        raise Unavailable(
            f"file {missing[0]} has no claim (it expired and a sweep took it, or it was "
            "never claimed); nothing was committed, send the records again"
        )


@contextmanager
def _refusing_bad_data(what: str) -> Iterator[None]:
    """PostgreSQL refusing a value (SQLSTATE class 22, e.g. a NUL byte in a string) is
    the request's fault, not an outage: :class:`InvalidInput`, the cause chained."""
    try:
        yield
    except psycopg.DataError as exc:
        raise InvalidInput(f"the catalog refused {what}: {exc}") from exc


def _lock_sets_then_datasets(conn: psycopg.Connection, dataset_ids: Sequence[int]) -> None:
    """Lock the rows a commit updates in the order every writer uses: embedding sets,
    then datasets, each sorted. ``bind`` (another API process, or replica, meeting a
    dataset for the first time) locks a set, then its dataset; a commit that locked the
    dataset first (its ``files`` row's foreign key, its counters) and the set last
    deadlocked with it (seen with two API workers under bench/ingest.py)."""
    ids = sorted(set(dataset_ids))
    conn.execute(
        "SELECT 1 FROM embedding_sets WHERE key IN (SELECT embedding_set_key FROM datasets"
        " WHERE id = ANY(%s)) ORDER BY key FOR NO KEY UPDATE", (ids,))
    conn.execute(
        "SELECT 1 FROM datasets WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", (ids,))


def _delete_where(
    conn: psycopg.Connection, dataset_id: int, condition: str, value: object
) -> list[str]:
    """Delete a dataset's records matching ``condition`` (one ``%s`` for ``value``), log
    them as deletions for the index and the queue, and keep the dataset's count right."""
    deleted = [
        r[0]
        for r in conn.execute(
            f"DELETE FROM records WHERE dataset_id = %s AND {condition} RETURNING record_id",
            (dataset_id, value),
        ).fetchall()
    ]
    if deleted:
        conn.execute(
            "INSERT INTO deletions (dataset_id, record_id) SELECT %s, unnest(%s::text[])",
            (dataset_id, deleted),
        )
        conn.execute(
            "UPDATE datasets SET record_count = record_count - %s WHERE id = %s",
            (len(deleted), dataset_id),
        )
    return deleted


def record_index_rows(commit: FileCommit, file_id: int) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    """The ``records`` rows of one committed file, columns in the table's order."""
    n = len(commit.record_ids)
    logged_at = np.datetime64(commit.logged_at.astimezone(UTC).replace(tzinfo=None), "us")
    return pa.table({
        "dataset_id": np.full(n, commit.dataset_id, np.int32),
        "record_id": pa.array(commit.record_ids, pa.string()),
        "file_id": np.full(n, file_id, np.int64),
        "row_index": np.arange(n, dtype=np.int32),
        "input_uri": pa.array(commit.input_uris, pa.string()),
        "inference_class": pa.array(commit.inference_classes, pa.string()),
        "label_class": pa.array(commit.label_classes, pa.string()),
        "tags": pa.array([pg_text_array(t) for t in commit.tags], pa.string()),
        "logged_at": pa.array(np.full(n, logged_at), pa.timestamp("us", tz="UTC")),
    })
