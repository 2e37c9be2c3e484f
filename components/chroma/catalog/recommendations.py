"""The labelling queue in SQL: scored production records, best first, with their signals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from chroma.catalog.copying import copy_csv, pg_text_array
from chroma.catalog.database import Database

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["MHBVersion", "QueueEntry", "RecommendationState", "Recommendations", "ScoredRow"]

_INCOMING_SCORES = """
CREATE TEMP TABLE incoming_scores (
    dataset text, record_id text, score double precision, percentile real, verdict text,
    signals jsonb, raw_signals jsonb, input_uri text, inference_class text, tags text[],
    logged_at timestamptz, labelled boolean
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
    updated_at: datetime


@dataclass(frozen=True)
class _Scored:
    """A production record's place in the queue: its score and why."""

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


@dataclass(frozen=True)
class ScoredRow(_Scored):
    """One production record's score, as the recommend operation writes it."""

    labelled: bool


@dataclass(frozen=True)
class QueueEntry(_Scored):
    """One queue entry, as the queue pages read it back."""

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
            rows = conn.execute(
                "SELECT r.file_id, count(*) FROM records r JOIN datasets d"
                " ON d.id = r.dataset_id WHERE d.embedding_set_key = %s"
                " AND d.split = 'training' GROUP BY r.file_id", (key,),
            ).fetchall()
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
        reference: dict[str, Any] | None, scored_seq: int,
    ) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO recommendation_state (embedding_set_key, mhb_version,"
                " index_version, reference, scored_seq, scored_count, updated_at)"
                " VALUES (%(k)s, %(m)s, %(i)s, %(r)s, %(s)s,"
                "  (SELECT count(*) FROM recommendations WHERE embedding_set_key = %(k)s), now())"
                " ON CONFLICT (embedding_set_key) DO UPDATE SET mhb_version = EXCLUDED.mhb_version,"
                " index_version = EXCLUDED.index_version, reference = EXCLUDED.reference,"
                " scored_seq = EXCLUDED.scored_seq, scored_count = EXCLUDED.scored_count,"
                " updated_at = now()",
                {"k": key, "m": mhb_version, "i": index_version,
                 "r": Jsonb(reference) if reference is not None else None, "s": scored_seq},
            )

    # -- the queue --------------------------------------------------------------------------

    def upsert(self, key: str, rows: Sequence[ScoredRow], mhb_version: int | None) -> None:
        """Insert or rescore ``rows`` (a page of a recommend run): COPY'd into a
        temporary table, then merged into the queue in one statement. A record once
        labelled (marked, or logged with a ``label_class``) stays out of the queue when
        rescored: a full refresh must not bring marked records back."""
        if not rows:
            return
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute(_INCOMING_SCORES)
            copy_csv(cur, "incoming_scores", _scored_table(rows))
            cur.execute(
                "INSERT INTO recommendations (embedding_set_key, dataset_id, record_id, score,"
                " percentile, verdict, signals, raw_signals, input_uri, inference_class, tags,"
                " logged_at, labelled, mhb_version)"
                " SELECT %(k)s, d.id, x.record_id, x.score, x.percentile, x.verdict,"
                "  x.signals, x.raw_signals, x.input_uri, x.inference_class, x.tags,"
                "  x.logged_at, x.labelled, %(v)s"
                " FROM incoming_scores x JOIN datasets d ON d.name = x.dataset"
                " ON CONFLICT (dataset_id, record_id) DO UPDATE SET score = EXCLUDED.score,"
                " percentile = EXCLUDED.percentile, verdict = EXCLUDED.verdict,"
                " signals = EXCLUDED.signals, raw_signals = EXCLUDED.raw_signals,"
                " input_uri = EXCLUDED.input_uri, inference_class = EXCLUDED.inference_class,"
                " tags = EXCLUDED.tags, logged_at = EXCLUDED.logged_at,"
                " labelled = recommendations.labelled OR EXCLUDED.labelled,"
                " mhb_version = EXCLUDED.mhb_version,"
                " scored_at = now()",
                {"k": key, "v": mhb_version},
            )

    def remove(self, key: str, refs: Sequence[tuple[str, str]]) -> None:
        """Drop deleted records from the queue."""
        if not refs:
            return
        with self.db.transaction() as conn:
            conn.execute(
                "DELETE FROM recommendations r USING datasets d,"
                " unnest(%s::text[], %s::text[]) AS x(dataset, record_id)"
                " WHERE d.name = x.dataset AND r.dataset_id = d.id"
                " AND r.record_id = x.record_id AND r.embedding_set_key = %s",
                ([d for d, _ in refs], [i for _, i in refs], key),
            )

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


def _json(value: dict[str, float]) -> str:
    """JSON text of a signals dict (numpy scalars allowed; NaN becomes null)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _scored_table(rows: Sequence[ScoredRow]) -> pa.Table:
    import pyarrow as pa

    """``rows`` as the columns of ``incoming_scores`` (JSON and ``text[]`` as text)."""
    return pa.table({
        "dataset": pa.array([r.dataset for r in rows], pa.string()),
        "record_id": pa.array([r.record_id for r in rows], pa.string()),
        "score": pa.array([r.score for r in rows], pa.float64()),
        "percentile": pa.array([r.percentile for r in rows], pa.float32()),
        "verdict": pa.array([r.verdict for r in rows], pa.string()),
        "signals": pa.array([_json(r.signals) for r in rows], pa.string()),
        "raw_signals": pa.array([_json(r.raw_signals) for r in rows], pa.string()),
        "input_uri": pa.array([r.input_uri for r in rows], pa.string()),
        "inference_class": pa.array([r.inference_class for r in rows], pa.string()),
        "tags": pa.array([pg_text_array(r.tags) for r in rows], pa.string()),
        "logged_at": pa.array([r.logged_at for r in rows], pa.timestamp("us", tz="UTC")),
        "labelled": pa.array([r.labelled for r in rows], pa.bool_()),
    })
