"""``StoredRecord``: one record as the catalog knows it, and where its row is stored.

The one row type every reader of the record index gets back (dataset pages, the change
feed, the live check of search hits), so consumers never convert between near-copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["STORED_RECORD_COLUMNS", "StoredRecord"]


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A live record as of its latest change, with the parquet file and row holding it."""

    dataset: str
    record_id: str
    split: str
    file_path: str
    row_index: int
    input_uri: str | None
    inference_class: str | None
    label_class: str | None
    tags: list[str]
    logged_at: datetime
    change_seq: int


STORED_RECORD_COLUMNS = (
    "d.name AS dataset, r.record_id, d.split, f.path AS file_path, r.row_index,"
    " r.input_uri, r.inference_class, r.label_class, r.tags, r.logged_at, r.change_seq"
)
"""The select list of a :class:`StoredRecord`, in field order, over ``records r`` joined
to ``datasets d`` and ``files f``."""
