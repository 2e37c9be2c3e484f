"""Incremental reads: what changed in an embedding set since a change number.

Every upsert, tag change or deletion takes the next ``change_seq``, so consumers (the
indexer, the recommender) remember the last number they consumed and ask for the rest,
in order. Also the bookkeeping those consumers write back (index state).

Sequence numbers are taken when a row is written, not when its transaction commits: a
bulk commit can hold numbers 100..149 while a tag change takes 150 and commits first.
A consumer that read "everything up to 150" then would skip 100..149 for good. So every
transaction that takes change numbers holds :data:`CHANGE_WRITERS_LOCK` shared
(:func:`writing_changes`), and :meth:`Changes.latest_seq` takes it exclusively for the
instant it reads the maximum: it waits for the writers in flight, and the number it
answers has no uncommitted number below it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from chroma.catalog.database import Database
from chroma.catalog.records import STORED_RECORD_COLUMNS, StoredRecord

__all__ = [
    "CHANGE_WRITERS_LOCK", "Changes", "DeletedRecord", "IndexState",
    "writing_changes",
]

CHANGE_WRITERS_LOCK = 0x6368_726F_6D61_0001
"""Advisory lock key ("chroma" + 1) shared by change writers, exclusive for readers."""


def writing_changes(conn: psycopg.Connection) -> None:
    """Call first in a transaction that takes ``change_seq`` numbers (see module doc)."""
    conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (CHANGE_WRITERS_LOCK,))


@dataclass(frozen=True)
class DeletedRecord:
    dataset: str
    record_id: str
    change_seq: int


@dataclass(frozen=True)
class IndexState:
    embedding_set_key: str
    collection: str | None
    version: int
    indexed_seq: int
    indexed_count: int
    updated_at: datetime


class Changes:
    """Change-sequence queries per embedding set."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def latest_seq(self, embedding_set_key: str) -> int:
        with self.db.transaction() as conn:
            # Wait out writers holding lower numbers (module doc); released at commit.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHANGE_WRITERS_LOCK,))
            (value,) = conn.execute(
                "SELECT GREATEST("
                " (SELECT COALESCE(max(r.change_seq), 0) FROM records r JOIN datasets d"
                "  ON d.id = r.dataset_id WHERE d.embedding_set_key = %(k)s),"
                " (SELECT COALESCE(max(x.change_seq), 0) FROM deletions x JOIN datasets d"
                "  ON d.id = x.dataset_id WHERE d.embedding_set_key = %(k)s))",
                {"k": embedding_set_key},
            ).fetchone()
        return int(value)

    def records_since(
        self, embedding_set_key: str, after_seq: int = 0, *, limit: int = 50_000,
        split: str | None = None, up_to_seq: int | None = None,
    ) -> list[StoredRecord]:
        """Live records whose latest change is after ``after_seq``, in change order."""
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {STORED_RECORD_COLUMNS}"
                " FROM records r JOIN datasets d ON d.id = r.dataset_id"
                " JOIN files f ON f.id = r.file_id"
                " WHERE d.embedding_set_key = %(k)s AND r.change_seq > %(after)s"
                " AND (%(upto)s::bigint IS NULL OR r.change_seq <= %(upto)s)"
                " AND (%(split)s::text IS NULL OR d.split = %(split)s)"
                " ORDER BY r.change_seq LIMIT %(limit)s",
                {"k": embedding_set_key, "after": after_seq, "upto": up_to_seq,
                 "split": split, "limit": limit},
            ).fetchall()
        return [StoredRecord(**row) for row in rows]

    def iter_records_since(
        self, embedding_set_key: str, after_seq: int = 0, *, page: int = 50_000,
        split: str | None = None, up_to_seq: int | None = None,
    ) -> Iterator[list[StoredRecord]]:
        """Pages of :meth:`records_since` until exhausted."""
        cursor = after_seq
        while True:
            rows = self.records_since(embedding_set_key, cursor, limit=page, split=split,
                                      up_to_seq=up_to_seq)
            if not rows:
                return
            yield rows
            cursor = rows[-1].change_seq

    def deletions_since(
        self, embedding_set_key: str, after_seq: int = 0, *, up_to_seq: int | None = None,
    ) -> list[DeletedRecord]:
        """Records deleted after ``after_seq`` (and not logged again since)."""
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT d.name AS dataset, x.record_id, x.change_seq"
                " FROM deletions x JOIN datasets d ON d.id = x.dataset_id"
                " WHERE d.embedding_set_key = %(k)s AND x.change_seq > %(after)s"
                " AND (%(upto)s::bigint IS NULL OR x.change_seq <= %(upto)s)"
                " AND NOT EXISTS (SELECT 1 FROM records r WHERE r.dataset_id = x.dataset_id"
                "   AND r.record_id = x.record_id AND r.change_seq > x.change_seq)"
                " ORDER BY x.change_seq",
                {"k": embedding_set_key, "after": after_seq, "upto": up_to_seq},
            ).fetchall()
        return [DeletedRecord(**row) for row in rows]

    def live_count(self, embedding_set_key: str) -> int:
        with self.db.transaction() as conn:
            (value,) = conn.execute(
                "SELECT COALESCE(sum(record_count), 0) FROM datasets"
                " WHERE embedding_set_key = %s", (embedding_set_key,),
            ).fetchone()
        return int(value)

    def index_state(self, embedding_set_key: str) -> IndexState | None:
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT * FROM index_state WHERE embedding_set_key = %s", (embedding_set_key,)
            ).fetchone()
        return IndexState(**row) if row else None

    def record_index_state(
        self, embedding_set_key: str, *, collection: str | None, version: int,
        indexed_seq: int, indexed_count: int,
    ) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO index_state (embedding_set_key, collection, version, indexed_seq,"
                " indexed_count, updated_at) VALUES (%s, %s, %s, %s, %s, now())"
                " ON CONFLICT (embedding_set_key) DO UPDATE SET collection = EXCLUDED.collection,"
                " version = EXCLUDED.version, indexed_seq = EXCLUDED.indexed_seq,"
                " indexed_count = EXCLUDED.indexed_count, updated_at = now()",
                (embedding_set_key, collection, version, indexed_seq, indexed_count),
            )
