"""Which search hits are still live records, and the fixed shape of an embedding set.

The index may lag the catalog by one ``index`` operation; while a delete or a tag change
is not in it yet, the query path asks the catalog (one round trip) so that a deleted
record is never answered and tags and classes are as of now.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from chroma.catalog.database import Database
from chroma.catalog.records import STORED_RECORD_COLUMNS, StoredRecord
from chroma.errors import NotFound

__all__ = ["LiveRecords", "RecordRef"]

RecordRef = tuple[str, str]
"""(dataset, record_id), as the index names a hit."""


class LiveRecords:
    """Keyed reads of the record index for the query path (``Catalog.live``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._shapes: dict[str, tuple[int, str]] = {}
        self._shapes_lock = threading.Lock()

    def lookup(self, refs: Sequence[RecordRef]) -> dict[RecordRef, StoredRecord]:
        """The live records among ``refs`` = [(dataset, record_id), ...]."""
        if not refs:
            return {}
        with self.db.transaction() as conn:
            rows = conn.execute(
                f"SELECT {STORED_RECORD_COLUMNS}"
                " FROM unnest(%s::text[], %s::text[]) AS q(dataset, record_id)"
                " JOIN datasets d ON d.name = q.dataset"
                " JOIN records r ON r.dataset_id = d.id AND r.record_id = q.record_id"
                " JOIN files f ON f.id = r.file_id",
                ([ref[0] for ref in refs], [ref[1] for ref in refs]),
            ).fetchall()
        return {(row[0], row[1]): StoredRecord(*row) for row in rows}

    def cached_shape(self, key: str) -> tuple[int, str] | None:
        """``shape(key)`` if it is known without a round trip, else ``None``."""
        with self._shapes_lock:
            return self._shapes.get(key)

    def shape(self, key: str) -> tuple[int | None, str]:
        """(dimension, distance) of an embedding set; ``NotFound`` if unknown.

        Cached once the dimension is fixed (by the first record): neither changes
        afterwards, and the query path then needs no catalog round trip for it."""
        with self._shapes_lock:
            cached = self._shapes.get(key)
        if cached is not None:
            return cached
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT dimension, distance FROM embedding_sets WHERE key = %s", (key,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no embedding set {key}")
        dimension, distance = row
        if dimension is not None:
            with self._shapes_lock:
                self._shapes[key] = (int(dimension), distance)
        return dimension, distance
