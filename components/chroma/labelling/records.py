"""One record as its page shows it: the catalog's row, the stored ``scores`` and
``metadata``, and its place in the labelling queue (if it was ever scored).

Owns: assembling that view (one catalog lookup, one read of two columns of one stored
row, one queue lookup). Called by ``GET /api/v1/datasets/{name}/records/{record_id}``.
Must not touch: HTTP (the router maps this to the wire model).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from chroma.catalog import Catalog, QueueEntry, StoredRecord
from chroma.errors import NotFound, Unavailable
from chroma.labelling.training import parse_scores
from chroma.storage import FileStore, read_columns

__all__ = ["RecordView", "read_record"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordView:
    record: StoredRecord
    embedding_set_key: str | None
    scores: dict[str, float] | None
    metadata: dict[str, Any] | None
    assessment: QueueEntry | None


def read_record(catalog: Catalog, store: FileStore, dataset: str, record_id: str) -> RecordView:
    """The record ``record_id`` of ``dataset``; ``NotFound`` for either unknown."""
    info = catalog.get_dataset(dataset)
    found = catalog.get_records(dataset, [record_id])
    if not found:
        raise NotFound(f"no record {record_id!r} in dataset {dataset!r}")
    record = found[0]
    try:
        columns = read_columns(store, [(record.file_path, record.row_index)],
                               ["scores", "metadata"])
    except NotFound as exc:
        # The catalog lists it, the store lost its file (compaction repairs that): an
        # outage of the data, not an unknown record; a 503 keeps the path in the log.
        raise Unavailable(f"record {dataset}/{record_id}: its file {record.file_path} "
                          "is missing from the store") from exc
    return RecordView(
        record=record,
        embedding_set_key=info.embedding_set_key,
        scores=_scores(columns["scores"][0], record),
        metadata=_metadata(columns["metadata"][0], record),
        assessment=catalog.queue.entry(dataset, record_id),
    )


def _scores(raw: Any, record: StoredRecord) -> dict[str, float] | None:
    try:
        return parse_scores(raw)
    except ValueError as exc:  # stored before /log refused such scores
        log.warning("record %s/%s: unreadable scores: %s", record.dataset, record.record_id, exc)
        return None


def _metadata(raw: Any, record: StoredRecord) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        log.warning("record %s/%s: its metadata is not JSON", record.dataset, record.record_id)
        return None
    return parsed if isinstance(parsed, dict) else {"value": parsed}
