"""Paging through the labelling queue: filters, cursors and diverse pages.

Owns: the cursor format (opaque to clients: score + dataset id + record id, base64 JSON)
and the diverse selection's reads (one catalog lookup per dataset on the page and one
read of their vectors, not one per item). The router, the CLI and the client read pages
the same way.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from chroma.catalog import Catalog, QueueEntry, RecommendationState
from chroma.errors import InvalidInput
from chroma.scoring import select_diverse
from chroma.storage import FileStore, read_embeddings

__all__ = ["DIVERSE_WINDOW", "QueueFilter", "QueuePage", "decode_cursor", "encode_cursor",
           "read_page"]

DIVERSE_WINDOW = 5
"""A diverse page picks ``limit`` items from the next ``limit * DIVERSE_WINDOW`` by score."""


@dataclass(frozen=True)
class QueueFilter:
    datasets: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    logged_from: datetime | None = None
    logged_until: datetime | None = None


@dataclass(frozen=True)
class QueuePage:
    entries: list[QueueEntry]
    next_cursor: str | None
    total: int
    state: RecommendationState | None


def encode_cursor(entry: QueueEntry) -> str:
    raw = json.dumps([entry.score, entry.dataset_id, entry.record_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[float, int, str]:
    try:
        score, dataset_id, record_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(score), int(dataset_id), str(record_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("cursor is not one this API returned") from exc


def read_page(
    catalog: Catalog, store: FileStore, key: str, *, limit: int, cursor: str | None = None,
    skip: int = 0, where: QueueFilter | None = None, diverse: bool = False,
) -> QueuePage:
    """One page of the queue of ``key``, best first; ``NotFound`` for an unknown set."""
    catalog.get_embedding_set(key)
    where = where or QueueFilter()
    window = limit * DIVERSE_WINDOW if diverse else limit
    entries = catalog.queue.page(
        key, limit=window, after=decode_cursor(cursor) if cursor else None, skip=skip,
        datasets=where.datasets, classes=where.classes, tags=where.tags,
        logged_from=where.logged_from, logged_until=where.logged_until,
    )
    next_cursor = encode_cursor(entries[-1]) if len(entries) == window else None
    if diverse and len(entries) > limit:
        entries = _diverse(catalog, store, entries, limit)
    return QueuePage(entries, next_cursor, catalog.queue.count(key), catalog.queue.state(key))


def _diverse(catalog: Catalog, store: FileStore, entries: list[QueueEntry],
             limit: int) -> list[QueueEntry]:
    """``limit`` entries, greedily far from each other, favouring high scores."""
    ids_by_dataset: dict[str, list[str]] = defaultdict(list)
    for entry in entries:
        ids_by_dataset[entry.dataset].append(entry.record_id)
    stored = {(r.dataset, r.record_id): r
              for dataset, ids in ids_by_dataset.items()
              for r in catalog.get_records(dataset, ids)}
    keep = [i for i, e in enumerate(entries) if (e.dataset, e.record_id) in stored]
    rows = [stored[(entries[i].dataset, entries[i].record_id)] for i in keep]
    vectors = read_embeddings(store, [(r.file_path, r.row_index) for r in rows])
    scores = np.array([entries[i].score for i in keep])
    chosen = select_diverse(vectors, scores, limit)
    return [entries[keep[i]] for i in chosen]
