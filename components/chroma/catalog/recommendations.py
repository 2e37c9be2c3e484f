"""The labelling queue in SQL: scored production records, best first, with their signals."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from chroma.catalog.copying import copy_csv
from chroma.catalog.database import Database

if TYPE_CHECKING:  # numpy and pyarrow load only where queue pages are written
    import numpy as np
    import pyarrow as pa

__all__ = ["MHBVersion", "QueueEntry", "RecommendationState", "Recommendations", "ScoredPage"]

_RECORD_COLUMNS = ("dataset", "record_id", "input_uri", "inference_class", "tags",
                   "logged_at", "labelled")
"""The columns of :attr:`ScoredPage.records` the queue keeps."""

_SWAP = (
    # The rank index and foreign key of migration 0004 (the primary key is built
    # first: the merge with the old queue looks records up by it), built once over the
    # filled staging table, under names the old table's do not take yet.
    "CREATE INDEX recommendations_next_rank ON {staging}"
    " (embedding_set_key, score DESC, dataset_id DESC, record_id DESC) WHERE NOT labelled",
    "ALTER TABLE {staging} ADD CONSTRAINT recommendations_next_dataset_id_fkey"
    " FOREIGN KEY (dataset_id) REFERENCES datasets (id)",
    # From here readers wait, until the commit.
    "DROP TABLE recommendations",
    "ALTER TABLE {staging} RENAME TO recommendations",
    "ALTER TABLE recommendations RENAME CONSTRAINT recommendations_next_pkey"
    " TO recommendations_pkey",
    "ALTER TABLE recommendations RENAME CONSTRAINT recommendations_next_dataset_id_fkey"
    " TO recommendations_dataset_id_fkey",
    "ALTER INDEX recommendations_next_rank RENAME TO recommendations_rank",
    "ANALYZE recommendations",  # a new table has no statistics for the queue's pages
)
"""A full refresh's staging table made the ``recommendations`` of migration 0004."""

_INCOMING_SCORES = """
CREATE TEMP TABLE incoming_scores (
    dataset text, record_id text, input_uri text, inference_class text, tags text[],
    logged_at timestamptz, labelled boolean, score double precision, percentile real,
    verdict text{signals}
) ON COMMIT DROP
"""


@dataclass(frozen=True)
class MHBVersion:
    embedding_set_key: str
    version: int
    path: str
    fingerprint: str
    training_count: int
    created_at: datetime


@dataclass(frozen=True)
class RecommendationState:
    embedding_set_key: str
    mhb_version: int | None
    index_version: int | None
    reference: dict[str, Any] | None
    scored_seq: int
    scored_count: int
    """Entries of the set in the queue (labelled ones included); -1 while a full refresh
    runs (or after one failed), until a run's end counts them."""
    updated_at: datetime


@dataclass(frozen=True)
class ScoredPage:
    """A page of production records as a recommend run scored them, in columns: no
    Python object per record on the way into the queue."""

    records: pa.Table
    """``dataset``, ``record_id``, ``input_uri``, ``inference_class``, ``tags`` (a
    ``text[]`` literal), ``logged_at`` (timestamp, or PostgreSQL's text of one) and
    ``labelled`` (logged with a label class), as ``Changes.record_columns_since`` reads
    them; other columns are ignored."""
    score: np.ndarray
    percentile: np.ndarray
    label: np.ndarray
    """bool per record: verdict ``label``, else ``ok``."""
    signals: Mapping[str, np.ndarray]
    """Normalised level per signal name; a value that is not finite is left out."""
    raw_signals: Mapping[str, np.ndarray]
    """Raw value per signal name; a value that is not finite is left out."""

    def __len__(self) -> int:
        return int(self.records.num_rows)


@dataclass(frozen=True)
class QueueEntry:
    """One queue entry, as the queue pages read it back: a production record's place in
    the queue, its score and why."""

    dataset: str
    record_id: str
    score: float
    percentile: float
    verdict: str
    signals: dict[str, float]
    raw_signals: dict[str, float]
    input_uri: str | None
    inference_class: str | None
    tags: list[str]
    logged_at: datetime
    dataset_id: int


class Recommendations:
    """MHB model versions, the scoring state and the sorted queue per embedding set."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- MHB versions -----------------------------------------------------------------

    def latest_mhb(self, key: str) -> MHBVersion | None:
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT * FROM mhb_models WHERE embedding_set_key = %s"
                " ORDER BY version DESC LIMIT 1", (key,),
            ).fetchone()
        return MHBVersion(**row) if row else None

    def add_mhb(self, key: str, path: str, fingerprint: str, training_count: int) -> int:
        with self.db.transaction() as conn:
            (version,) = conn.execute(
                "INSERT INTO mhb_models (embedding_set_key, version, path, fingerprint,"
                " training_count) SELECT %s, COALESCE(max(version), 0) + 1, %s, %s, %s"
                " FROM mhb_models WHERE embedding_set_key = %s RETURNING version",
                (key, path, fingerprint, training_count, key),
            ).fetchone()
        return int(version)

    def training_files(self, key: str) -> list[tuple[int, int]]:
        """(file id, live records in it) of the set's training data: the fit's fingerprint."""
        with self.db.transaction() as conn:
            datasets = [row[0] for row in conn.execute(
                "SELECT id FROM datasets WHERE embedding_set_key = %s AND split = 'training'",
                (key,)).fetchall()]
            # The ids as values, not a join: the planner then reads only their records
            # by the primary key (a join scanned all 1M records of a set, 90 ms).
            rows = conn.execute(
                "SELECT file_id, count(*) FROM records WHERE dataset_id = ANY(%s)"
                " GROUP BY file_id ORDER BY file_id", (datasets,),
            ).fetchall() if datasets else []
        return [(int(f), int(n)) for f, n in rows]

    # -- scoring state --------------------------------------------------------------------

    def state(self, key: str) -> RecommendationState | None:
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT * FROM recommendation_state WHERE embedding_set_key = %s", (key,)
            ).fetchone()
        return RecommendationState(**row) if row else None

    def save_state(
        self, key: str, *, mhb_version: int | None, index_version: int | None,
        reference: dict[str, Any] | None, scored_seq: int, recount: bool = True,
        count: int | None = None,
    ) -> None:
        """Record a run's end. ``scored_count`` follows the queue as each write commits
        (:meth:`upsert`, :meth:`remove`); ``recount`` counts the queue anew, which a full
        refresh does (counting 1M entries took 0.25 s, more than the rest of an
        incremental run's catalog work), as does any run after :meth:`forget_count`;
        ``count`` (what :meth:`finish_refresh` returned) is taken as it is instead."""
        counted = (sql.SQL("(SELECT count(*) FROM recommendations WHERE embedding_set_key"
                           " = %(k)s)") if count is None else sql.Literal(int(count)))
        known = recount or count is not None
        # Not counted in VALUES unless asked: PostgreSQL evaluates VALUES even when the
        # row exists (0.4 s at 1M); a CASE branch runs its subquery only when taken.
        first = counted if known else sql.SQL("-1")
        kept = (sql.SQL("EXCLUDED.scored_count") if known
                else sql.SQL("CASE WHEN recommendation_state.scored_count < 0 THEN {counted}"
                             " ELSE recommendation_state.scored_count END"
                             ).format(counted=counted))
        with self.db.transaction() as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO recommendation_state (embedding_set_key, mhb_version,"
                    " index_version, reference, scored_seq, scored_count, updated_at)"
                    " VALUES (%(k)s, %(m)s, %(i)s, %(r)s, %(s)s, {first}, now())"
                    " ON CONFLICT (embedding_set_key) DO UPDATE SET"
                    " mhb_version = EXCLUDED.mhb_version,"
                    " index_version = EXCLUDED.index_version, reference = EXCLUDED.reference,"
                    " scored_seq = EXCLUDED.scored_seq, scored_count = {kept},"
                    " updated_at = now()").format(first=first, kept=kept),
                {"k": key, "m": mhb_version, "i": index_version,
                 "r": Jsonb(reference) if reference is not None else None, "s": scored_seq},
            )

    def forget_count(self, key: str) -> None:
        """Mark the set's ``scored_count`` unknown (-1) until a run's end counts the queue:
        a full refresh writes its pages without counting what they add, and the run
        after one that failed must not build on the count."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE recommendation_state SET scored_count = -1"
                         " WHERE embedding_set_key = %s", (key,))

    # -- the queue --------------------------------------------------------------------------

    def upsert(self, key: str, page: ScoredPage, mhb_version: int | None, *,
               count: bool = True) -> int:
        """Insert or rescore the records of ``page`` (of a recommend run): COPY'd into a
        temporary table, one float column per signal, then merged into the queue in one
        statement that builds each record's signals JSON (finite values only). A record
        once labelled (marked, or logged with a ``label_class``) stays out of the queue
        when rescored: a full refresh must not bring marked records back. Returns how
        many of them were not in the queue before (rows added, labelled or not), which
        ``scored_count`` follows; ``count=False`` (after :meth:`forget_count`) spares
        that lookup (~7% of a page's write) and returns 0."""
        if not len(page):
            return 0
        signals = _json_object("s", list(page.signals))
        raw_signals = _json_object("r", list(page.raw_signals))
        with self.db.transaction() as conn, conn.cursor() as cur:
            _copy_incoming(cur, page)
            (present,) = cur.execute(
                "SELECT count(*) FROM incoming_scores x JOIN datasets d ON d.name = x.dataset"
                " JOIN recommendations r ON r.dataset_id = d.id AND r.record_id = x.record_id"
            ).fetchone() if count else (None,)
            cur.execute(
                sql.SQL(
                    "INSERT INTO recommendations (embedding_set_key, dataset_id, record_id,"
                    " score, percentile, verdict, signals, raw_signals, input_uri,"
                    " inference_class, tags, logged_at, labelled, mhb_version)"
                    " SELECT %(k)s, d.id, x.record_id, x.score, x.percentile, x.verdict,"
                    "  {signals}, {raw_signals}, x.input_uri, x.inference_class, x.tags,"
                    "  x.logged_at, x.labelled, %(v)s"
                    " FROM incoming_scores x JOIN datasets d ON d.name = x.dataset"
                    " ON CONFLICT (dataset_id, record_id) DO UPDATE SET score = EXCLUDED.score,"
                    " percentile = EXCLUDED.percentile, verdict = EXCLUDED.verdict,"
                    " signals = EXCLUDED.signals, raw_signals = EXCLUDED.raw_signals,"
                    " input_uri = EXCLUDED.input_uri, inference_class = EXCLUDED.inference_class,"
                    " tags = EXCLUDED.tags, logged_at = EXCLUDED.logged_at,"
                    " labelled = recommendations.labelled OR EXCLUDED.labelled,"
                    " mhb_version = EXCLUDED.mhb_version,"
                    " scored_at = now()").format(signals=signals, raw_signals=raw_signals),
                {"k": key, "v": mhb_version},
            )
            if present is None:
                return 0
            added = int(cur.rowcount) - int(present)
            _count_added(cur, key, added)
            return added

    # -- a full refresh: the set's new queue built beside the old one, swapped in at once

    def begin_refresh(self, key: str) -> None:
        """Start a full refresh of ``key``'s queue: an empty staging table without indexes
        (one a failed run left behind is dropped), which :meth:`finish_refresh` makes
        the new queue. Logged, as the queue is: the rows its pages write are the new
        queue's, not copied again at the end (that copy was a third of the swap's time
        at 1M, with nothing else running beside it). Readers keep the old queue until
        the swap."""
        staging = _staging(key)
        with self.db.transaction() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
            conn.execute(sql.SQL(
                "CREATE TABLE {} (LIKE recommendations INCLUDING DEFAULTS)"
            ).format(staging))

    def stage(self, key: str, page: ScoredPage, mhb_version: int | None) -> None:
        """Append ``page`` to the refresh's staging table: a plain INSERT into a table
        without indexes (upserting 1M rows into the indexed queue with a 16 MB buffer
        pool was ~40 s of PostgreSQL CPU, mostly index pages read and written back)."""
        if not len(page):
            return
        signals = _json_object("s", list(page.signals))
        raw_signals = _json_object("r", list(page.raw_signals))
        with self.db.transaction() as conn, conn.cursor() as cur:
            _copy_incoming(cur, page)
            cur.execute(sql.SQL(
                "INSERT INTO {staging} (embedding_set_key, dataset_id, record_id, score,"
                " percentile, verdict, signals, raw_signals, input_uri, inference_class, tags,"
                " logged_at, labelled, mhb_version)"
                " SELECT %(k)s, d.id, x.record_id, x.score, x.percentile, x.verdict,"
                "  {signals}, {raw_signals}, x.input_uri, x.inference_class, x.tags,"
                "  x.logged_at, x.labelled, %(v)s"
                " FROM incoming_scores x JOIN datasets d ON d.name = x.dataset"
            ).format(staging=_staging(key), signals=signals, raw_signals=raw_signals),
                {"k": key, "v": mhb_version})

    def abandon_refresh(self, key: str) -> None:
        """Drop a failed refresh's staging table; the old queue stays as it was."""
        with self.db.transaction() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_staging(key)))

    def finish_refresh(self, key: str, deleted: Sequence[tuple[str, str]]) -> int:
        """Swap the staged queue in, in one transaction, and return how many entries the
        set has in it (labelled ones included). The staging table becomes the new
        ``recommendations``: its records take the labelled mark the old queue holds (as
        :meth:`upsert` keeps it) and the old one's set key; every old row not staged
        (other sets' entries, and this set's records the run skipped) is added, less
        ``deleted``; its indexes are built once, then it replaces the old table.
        Writers wait from the start (a record marked labelled meanwhile is not lost);
        readers see the old queue until the commit, then the new one, never a mix, and
        wait only for the drop and renames."""
        staging = _staging(key)
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute("SET LOCAL work_mem = '32MB'")  # the 1M-row joins in memory
            cur.execute("LOCK TABLE recommendations IN EXCLUSIVE MODE")
            cur.execute(sql.SQL(
                "ALTER TABLE {staging} ADD CONSTRAINT recommendations_next_pkey"
                " PRIMARY KEY (dataset_id, record_id)").format(staging=staging))
            # As upsert's ON CONFLICT: the set key kept, a labelled mark kept. Only old
            # rows that can change a staged one are looked up (staged rows all have
            # ``key``): the marked ones, usually few, by the primary key just built.
            cur.execute(sql.SQL(
                "UPDATE {staging} s SET embedding_set_key = o.embedding_set_key,"
                " labelled = s.labelled OR o.labelled FROM recommendations o"
                " WHERE (o.labelled OR o.embedding_set_key <> %(k)s)"
                " AND o.dataset_id = s.dataset_id AND o.record_id = s.record_id"
                " AND (o.labelled AND NOT s.labelled"
                "  OR o.embedding_set_key <> s.embedding_set_key)").format(staging=staging),
                {"k": key})
            cur.execute(sql.SQL(
                "INSERT INTO {staging} SELECT o.* FROM recommendations o"
                " WHERE NOT EXISTS (SELECT FROM {staging} s"
                "  WHERE s.dataset_id = o.dataset_id AND s.record_id = o.record_id)"
            ).format(staging=staging))
            if deleted:
                cur.execute(sql.SQL(
                    "DELETE FROM {staging} r USING datasets d,"
                    " unnest(%s::text[], %s::text[]) AS x(dataset, record_id)"
                    " WHERE d.name = x.dataset AND r.dataset_id = d.id"
                    " AND r.record_id = x.record_id AND r.embedding_set_key = %s"
                ).format(staging=staging),
                    ([d for d, _ in deleted], [i for _, i in deleted], key))
            for statement in _SWAP:
                cur.execute(sql.SQL(statement).format(staging=staging))
            # Counted here, not by the next statement: the index builds have just read
            # every row (a first scan of new rows writes their pages back, 2 s at 1M).
            (count,) = cur.execute("SELECT count(*) FROM recommendations"
                                   " WHERE embedding_set_key = %s", (key,)).fetchone()
        return int(count)

    def remove(self, key: str, refs: Sequence[tuple[str, str]]) -> int:
        """Drop deleted records from the queue; returns how many were in it."""
        if not refs:
            return 0
        with self.db.transaction() as conn, conn.cursor() as cur:
            removed = cur.execute(
                "DELETE FROM recommendations r USING datasets d,"
                " unnest(%s::text[], %s::text[]) AS x(dataset, record_id)"
                " WHERE d.name = x.dataset AND r.dataset_id = d.id"
                " AND r.record_id = x.record_id AND r.embedding_set_key = %s",
                ([d for d, _ in refs], [i for _, i in refs], key),
            ).rowcount
            _count_added(cur, key, -removed)
        return removed

    def mark_labelled(self, dataset: str, record_ids: Sequence[str]) -> list[str]:
        with self.db.transaction() as conn:
            rows = conn.execute(
                "UPDATE recommendations r SET labelled = true FROM datasets d"
                " WHERE d.name = %s AND r.dataset_id = d.id AND r.record_id = ANY(%s)"
                " RETURNING r.record_id", (dataset, list(record_ids)),
            ).fetchall()
        return [r[0] for r in rows]

    def page(
        self, key: str, *, limit: int, after: tuple[float, int, str] | None = None,
        skip: int = 0, datasets: Sequence[str] = (), classes: Sequence[str] = (),
        tags: Sequence[str] = (), logged_from: datetime | None = None,
        logged_until: datetime | None = None,
    ) -> list[QueueEntry]:
        """Best first; keyset pagination by (score, dataset id, record id) descending."""
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT d.name AS dataset, r.record_id, r.score, r.percentile, r.verdict,"
                " r.signals, r.raw_signals, r.input_uri, r.inference_class, r.tags,"
                " r.logged_at, r.dataset_id"
                " FROM recommendations r JOIN datasets d ON d.id = r.dataset_id"
                " WHERE r.embedding_set_key = %(k)s AND NOT r.labelled"
                " AND (%(after_score)s::float8 IS NULL OR"
                "   (r.score, r.dataset_id, r.record_id) < (%(after_score)s, %(after_ds)s,"
                "    %(after_id)s))"
                " AND (cardinality(%(datasets)s::text[]) = 0 OR d.name = ANY(%(datasets)s))"
                " AND (cardinality(%(classes)s::text[]) = 0"
                "   OR r.inference_class = ANY(%(classes)s))"
                " AND (cardinality(%(tags)s::text[]) = 0 OR r.tags && %(tags)s::text[])"
                " AND (%(from)s::timestamptz IS NULL OR r.logged_at >= %(from)s)"
                " AND (%(until)s::timestamptz IS NULL OR r.logged_at < %(until)s)"
                " ORDER BY r.score DESC, r.dataset_id DESC, r.record_id DESC"
                " OFFSET %(skip)s LIMIT %(limit)s",
                {
                    "k": key, "after_score": after[0] if after else None,
                    "after_ds": after[1] if after else None,
                    "after_id": after[2] if after else None,
                    "datasets": list(datasets), "classes": list(classes), "tags": list(tags),
                    "from": logged_from, "until": logged_until, "skip": skip, "limit": limit,
                },
            ).fetchall()
        return [QueueEntry(**row) for row in rows]

    def entry(self, dataset: str, record_id: str) -> QueueEntry | None:
        """The record's queue entry (labelled or not), or None if it was never scored."""
        with self.db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT d.name AS dataset, r.record_id, r.score, r.percentile, r.verdict,"
                " r.signals, r.raw_signals, r.input_uri, r.inference_class, r.tags,"
                " r.logged_at, r.dataset_id"
                " FROM recommendations r JOIN datasets d ON d.id = r.dataset_id"
                " WHERE d.name = %s AND r.record_id = %s", (dataset, record_id),
            ).fetchone()
        return QueueEntry(**row) if row else None

    def scores_of(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """(dataset, record id) -> queue score of those of ``refs`` that were scored,
        labelled or not (the map colours points by it)."""
        if not refs:
            return {}
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT x.dataset, x.record_id, r.score"
                " FROM unnest(%s::text[], %s::text[]) AS x(dataset, record_id)"
                " JOIN datasets d ON d.name = x.dataset"
                " JOIN recommendations r ON r.dataset_id = d.id AND r.record_id = x.record_id",
                ([d for d, _ in refs], [i for _, i in refs]),
            ).fetchall()
        return {(name, record_id): float(score) for name, record_id, score in rows}

    def count(self, key: str) -> int:
        with self.db.transaction() as conn:
            (n,) = conn.execute(
                "SELECT count(*) FROM recommendations WHERE embedding_set_key = %s"
                " AND NOT labelled", (key,),
            ).fetchone()
        return int(n)


def _count_added(cur: psycopg.Cursor[Any], key: str, added: int) -> None:
    """Keep the set's ``scored_count`` in step with the queue, in the transaction that
    changed it: a run that fails after some pages leaves it true."""
    if added:
        cur.execute("UPDATE recommendation_state SET scored_count = scored_count + %s"
                    " WHERE embedding_set_key = %s AND scored_count >= 0", (added, key))


def _copy_incoming(cur: psycopg.Cursor[Any], page: ScoredPage) -> None:
    """``page`` COPY'd into the transaction's temporary ``incoming_scores``."""
    table = _scored_table(page)
    columns = sql.SQL("").join(
        sql.SQL(", {} double precision").format(sql.Identifier(name))
        for name in table.column_names[len(_RECORD_COLUMNS) + 3:])
    cur.execute(sql.SQL(_INCOMING_SCORES).format(signals=columns))
    copy_csv(cur, "incoming_scores", table)


def _staging(key: str) -> sql.Identifier:
    """The table a full refresh of ``key`` writes its pages into (one per set:
    a name from the key's hash, as keys may be longer than an identifier)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return sql.Identifier(f"recommendations_refresh_{digest}")


def _json_object(prefix: str, names: list[str]) -> sql.Composable:
    """SQL building a JSON object of the columns ``<prefix>0..`` of ``incoming_scores``
    named ``names``, without the NULL ones (PostgreSQL writes each float8 in its
    shortest exact form, as the JSON encoder did)."""
    pairs = sql.SQL(", ").join(
        sql.SQL("{}::text, x.{}").format(sql.Literal(name), sql.Identifier(f"{prefix}{i}"))
        for i, name in enumerate(names))
    return sql.SQL("jsonb_strip_nulls(jsonb_build_object({}))").format(pairs)


def _scored_table(page: ScoredPage) -> pa.Table:
    """``page`` as the columns of ``incoming_scores``: the record columns, score,
    percentile, verdict, then one column per signal (``s0..``) and raw signal (``r0..``),
    NULL where the value is not finite."""
    import numpy as np
    import pyarrow as pa

    def finite_or_null(values: np.ndarray) -> pa.Array:
        array = np.asarray(values, dtype=np.float64)
        return pa.array(array, pa.float64(), mask=~np.isfinite(array))

    columns: dict[str, Any] = {name: page.records.column(name) for name in _RECORD_COLUMNS}
    columns["score"] = pa.array(np.asarray(page.score, dtype=np.float64), pa.float64())
    columns["percentile"] = pa.array(np.asarray(page.percentile, dtype=np.float32),
                                     pa.float32())
    columns["verdict"] = pa.array(np.where(page.label, "label", "ok"), pa.string())
    for prefix, signals in (("s", page.signals), ("r", page.raw_signals)):
        for i, values in enumerate(signals.values()):
            columns[f"{prefix}{i}"] = finite_or_null(values)
    return pa.table(columns)
