"""Which search hits are still live records, with their current catalog fields.

The index lags the catalog by one ``index`` operation; the query path asks the catalog
(one round trip) so that a deleted record is never answered, even before the indexer has
removed it, and tags and classes are as of now.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from chroma.catalog import Database
from chroma.errors import NotFound
from chroma.index import RecordRef

__all__ = ["LiveRecord", "embedding_set_shape", "live_records"]


@dataclass(frozen=True, slots=True)
class LiveRecord:
    dataset: str
    record_id: str
    split: str
    input_uri: str | None
    inference_class: str | None
    label_class: str | None
    tags: list[str]
    logged_at: datetime
    file_path: str
    row_index: int


def live_records(db: Database, refs: Sequence[RecordRef]) -> dict[RecordRef, LiveRecord]:
    """The live records among ``refs`` = [(dataset, record_id), ...]."""
    if not refs:
        return {}
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT d.name, r.record_id, d.split, r.input_uri, r.inference_class,"
            " r.label_class, r.tags, r.logged_at, f.path, r.row_index"
            " FROM unnest(%s::text[], %s::text[]) AS q(dataset, record_id)"
            " JOIN datasets d ON d.name = q.dataset"
            " JOIN records r ON r.dataset_id = d.id AND r.record_id = q.record_id"
            " JOIN files f ON f.id = r.file_id",
            ([ref[0] for ref in refs], [ref[1] for ref in refs]),
        ).fetchall()
    found = {(row[0], row[1]): LiveRecord(*row) for row in rows}
    return found


_shapes: dict[str, tuple[int, str]] = {}
_shapes_lock = threading.Lock()


def embedding_set_shape(db: Database, key: str) -> tuple[int | None, str]:
    """(dimension, distance) of an embedding set; ``NotFound`` if unknown.

    Cached per process once the dimension is fixed (by the first record): neither changes
    afterwards, and the query path then needs no catalog round trip for it."""
    with _shapes_lock:
        cached = _shapes.get(key)
    if cached is not None:
        return cached
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT dimension, distance FROM embedding_sets WHERE key = %s", (key,)
        ).fetchone()
    if row is None:
        raise NotFound(f"no embedding set {key}")
    dimension, distance = row
    if dimension is not None:
        with _shapes_lock:
            _shapes[key] = (int(dimension), distance)
    return dimension, distance
