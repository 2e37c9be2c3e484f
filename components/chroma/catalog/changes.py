"""Incremental reads: what changed in an embedding set since a change number.

Every upsert, tag change or deletion takes the next ``change_seq``, so consumers (the
indexer, the recommender) remember the last number they consumed and ask for the rest,
in order. Also the bookkeeping those consumers write back (index state, the labelling
queue's watermark when a run had nothing to score) and how far each consumer lags
behind the feed (:meth:`Changes.feed_lag`, for ``/status``, metrics and the freshness
check of the implicit triggers).

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
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from chroma.catalog.database import Database
from chroma.catalog.records import STORED_RECORD_COLUMNS, StoredRecord

if TYPE_CHECKING:  # pyarrow loads only where record columns are read
    import pyarrow as pa

__all__ = [
    "CHANGE_WRITERS_LOCK", "Changes", "DeletedRecord", "FeedLag",
    "IndexState", "writing_changes",
]

CHANGE_WRITERS_LOCK = 0x6368_726F_6D61_0001
"""Advisory lock key ("chroma" + 1) shared by change writers, exclusive for readers."""


def _record_column_types() -> dict[str, pa.DataType]:
    import pyarrow as pa

    return {"dataset": pa.string(), "record_id": pa.string(), "file_path": pa.string(),
            "row_index": pa.int64(), "input_uri": pa.string(),
            "inference_class": pa.string(), "labelled": pa.bool_(), "tags": pa.string(),
            "logged_at": pa.string(), "change_seq": pa.int64()}


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


@dataclass(frozen=True)
class FeedLag:
    """How far an embedding set's consumers are behind its change feed."""

    key: str
    head_seq: int
    """The latest change number of the set (0: no change yet)."""
    indexed_seq: int
    """Consumed by the vector index (``index_state``)."""
    scored_seq: int
    """Consumed by the labelling queue (``recommendation_state``)."""
    index_lag: int
    """Changes (records logged, re-logged or tagged, deletions) the index has not applied."""
    queue_lag: int
    """Changes the labelling queue has not consumed."""


_LAG_SQL = """
WITH sets AS (
  SELECT e.key, COALESCE(i.indexed_seq, 0) AS indexed_seq,
         COALESCE(s.scored_seq, 0) AS scored_seq
  FROM embedding_sets e
  LEFT JOIN index_state i ON i.embedding_set_key = e.key
  LEFT JOIN recommendation_state s ON s.embedding_set_key = e.key
)
SELECT sets.key, sets.indexed_seq, sets.scored_seq, {head} AS head_seq,
  (SELECT count(*) FROM records r JOIN datasets d ON d.id = r.dataset_id
   WHERE d.embedding_set_key = sets.key AND r.change_seq > sets.indexed_seq)
  + (SELECT count(*) FROM deletions x JOIN datasets d ON d.id = x.dataset_id
   WHERE d.embedding_set_key = sets.key AND x.change_seq > sets.indexed_seq) AS index_lag,
  (SELECT count(*) FROM records r JOIN datasets d ON d.id = r.dataset_id
   WHERE d.embedding_set_key = sets.key AND r.change_seq > sets.scored_seq)
  + (SELECT count(*) FROM deletions x JOIN datasets d ON d.id = x.dataset_id
   WHERE d.embedding_set_key = sets.key AND x.change_seq > sets.scored_seq) AS queue_lag
FROM sets ORDER BY sets.key
"""


def head_seq_sql(key: str) -> str:
    """SQL for the head of the change feed of the set whose key is the SQL expression
    ``key``: the change_seq index walked back from the top (as :meth:`Changes.latest_seq`)
    to the first change of one of the set's datasets. ``max(...)`` over a join to
    ``datasets`` scanned every record instead: 0.2-0.6 s at 1M per ``/status``, which a
    poller asks four times a second."""
    datasets = f"ARRAY(SELECT d.id FROM datasets d WHERE d.embedding_set_key = {key})"
    return (f"GREATEST(0,"
            f" (SELECT r.change_seq FROM records r WHERE r.dataset_id = ANY({datasets})"
            f"  ORDER BY r.change_seq DESC LIMIT 1),"
            f" (SELECT x.change_seq FROM deletions x WHERE x.dataset_id = ANY({datasets})"
            f"  ORDER BY x.change_seq DESC LIMIT 1))")


_LAG_SQL = _LAG_SQL.format(head=head_seq_sql("sets.key"))


class Changes:
    """Change-sequence queries per embedding set."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def latest_seq(self, embedding_set_key: str) -> int:
        with self.db.transaction() as conn:
            # Wait out writers holding lower numbers (module doc); released at commit.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHANGE_WRITERS_LOCK,))
            datasets = _dataset_ids(conn, embedding_set_key)
            if not datasets:
                return 0
            # The set's dataset ids as values and ORDER BY ... LIMIT 1: the planner walks
            # the change_seq index back from the head. A join to datasets made it scan
            # and hash every record (190 ms at 1M, while writers wait on the lock above).
            (value,) = conn.execute(
                "SELECT GREATEST(0,"
                " (SELECT r.change_seq FROM records r WHERE r.dataset_id = ANY(%(d)s)"
                "  ORDER BY r.change_seq DESC LIMIT 1),"
                " (SELECT x.change_seq FROM deletions x WHERE x.dataset_id = ANY(%(d)s)"
                "  ORDER BY x.change_seq DESC LIMIT 1))",
                {"d": datasets},
            ).fetchone()
        return int(value)

    def records_since(
        self, embedding_set_key: str, after_seq: int = 0, *, limit: int = 50_000,
        split: str | None = None, up_to_seq: int | None = None,
    ) -> list[StoredRecord]:
        """Live records whose latest change is after ``after_seq``, in change order (at
        most ``limit``; read by windows of change numbers, see :func:`_windows`)."""
        query = (
            f"SELECT {STORED_RECORD_COLUMNS}"
            " FROM records r JOIN datasets d ON d.id = r.dataset_id"
            " JOIN files f ON f.id = r.file_id"
            " WHERE r.dataset_id = ANY(%(datasets)s) AND r.change_seq > %(after)s"
            " AND r.change_seq <= %(upto)s ORDER BY r.change_seq LIMIT %(limit)s")
        rows: list[dict[str, Any]] = []
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            for params in _windows(conn, embedding_set_key, split, after_seq, up_to_seq, limit):
                rows = cur.execute(query, params).fetchall()
                if rows:
                    break
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

    def record_columns_since(
        self, embedding_set_key: str, after_seq: int = 0, *, limit: int = 50_000,
        split: str | None = None, up_to_seq: int | None = None,
    ) -> pa.Table:
        """:meth:`records_since` as columns (dataset, record_id, file_path, row_index,
        input_uri, inference_class, labelled, tags, logged_at, change_seq), read by COPY and
        parsed by Arrow: no Python object per record (a fifth of a 1M refresh's CPU was
        building them). ``tags`` and ``logged_at`` stay PostgreSQL's text (an array
        literal, a timestamp), to be written back as they are; ``labelled`` says the
        record was logged with a ``label_class``."""
        import pyarrow as pa
        import pyarrow.csv as pa_csv

        query = (
            "COPY (SELECT d.name, r.record_id, f.path, r.row_index, r.input_uri,"
            " r.inference_class, r.label_class IS NOT NULL, r.tags::text, r.logged_at::text,"
            " r.change_seq FROM records r JOIN datasets d ON d.id = r.dataset_id"
            " JOIN files f ON f.id = r.file_id"
            " WHERE r.dataset_id = ANY(%(datasets)s) AND r.change_seq > %(after)s"
            " AND r.change_seq <= %(upto)s ORDER BY r.change_seq LIMIT %(limit)s)"
            " TO STDOUT (FORMAT csv)")
        data = b""
        with self.db.transaction() as conn, conn.cursor() as cur:
            for params in _windows(conn, embedding_set_key, split, after_seq, up_to_seq, limit):
                with cur.copy(query, params) as copy:
                    data = b"".join(bytes(block) for block in copy)
                if data:
                    break
        column_types = _record_column_types()
        names, types = list(column_types), list(column_types.values())
        if not data:
            return pa.table({n: pa.array([], t) for n, t in zip(names, types, strict=True)})
        return pa_csv.read_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(column_names=names),
            convert_options=pa_csv.ConvertOptions(
                column_types=column_types, true_values=["t"], false_values=["f"],
                # NULL is an empty unquoted field, nothing else (Arrow also took the
                # text NULL, NA, nan... for one); "" is the empty string.
                null_values=[""], strings_can_be_null=True,
                quoted_strings_can_be_null=False),
        )

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

    def feed_lag(self) -> list[FeedLag]:
        """Per embedding set: the feed's head and what the index and the queue consumed."""
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(_LAG_SQL).fetchall()
        return [FeedLag(**{k: (v if k == "key" else int(v)) for k, v in row.items()})
                for row in rows]

    def mark_scored(self, embedding_set_key: str, scored_seq: int) -> None:
        """The labelling queue consumed the feed up to ``scored_seq`` with nothing to score
        (no training records yet): record it, so the set does not look behind for ever.
        A set with no scoring reference yet keeps none, so its next run scores in full."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO recommendation_state (embedding_set_key, scored_seq, updated_at)"
                " VALUES (%s, %s, now()) ON CONFLICT (embedding_set_key) DO UPDATE SET"
                " scored_seq = GREATEST(recommendation_state.scored_seq, EXCLUDED.scored_seq),"
                " updated_at = now()",
                (embedding_set_key, scored_seq),
            )


def _dataset_ids(
    conn: psycopg.Connection[Any], embedding_set_key: str, split: str | None = None,
) -> list[int]:
    """The ids of the set's datasets (of ``split`` only, if given). Queries over records
    take them as values, not a join: the planner then knows how many records they hold
    and uses the indexes."""
    return [row[0] for row in conn.execute(
        "SELECT id FROM datasets WHERE embedding_set_key = %s"
        " AND (%s::text IS NULL OR split = %s) ORDER BY id",
        (embedding_set_key, split, split)).fetchall()]


def _windows(
    conn: psycopg.Connection[Any], embedding_set_key: str, split: str | None, after_seq: int,
    up_to_seq: int | None, limit: int,
) -> Iterator[dict[str, Any]]:
    """Query parameters for a page of a set's records: successive ranges of change
    numbers after ``after_seq``, each four times the last; the caller reads each until one
    has rows. With ``change_seq > after ... LIMIT`` alone the planner read and sorted every
    later record of the set for each page (O(n^2) over a walk of the set: a 1M refresh
    spent most of PostgreSQL's CPU there)."""
    datasets = _dataset_ids(conn, embedding_set_key, split)
    if not datasets:
        return
    end = up_to_seq
    if end is None:
        (end,) = conn.execute("SELECT COALESCE(max(change_seq), 0) FROM records").fetchone()
    window = max(limit, 1)
    while after_seq < end:
        upto = min(after_seq + window, end)
        yield {"datasets": datasets, "after": after_seq, "upto": upto, "limit": limit}
        after_seq, window = upto, window * 4
