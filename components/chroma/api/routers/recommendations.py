"""The labelling queue: ``GET /api/v1/recommendations`` and marking records labelled."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from chroma.api.deps import CatalogDep, StoreDep
from chroma.api.models import (
    ErrorBody,
    LabelledRecords,
    MarkLabelled,
    RecommendationItem,
    RecommendationPage,
)
from chroma.catalog import Catalog, QueueEntry
from chroma.errors import InvalidInput
from chroma.scoring import select_diverse
from chroma.storage import FileStore, read_embeddings

router = APIRouter(prefix="/api/v1/recommendations", tags=["recommendations"])

DIVERSE_WINDOW = 5
"""A diverse page picks ``limit`` items from the next ``limit * DIVERSE_WINDOW`` by score."""


def _encode_cursor(entry: QueueEntry) -> str:
    raw = json.dumps([entry.score, entry.dataset_id, entry.record_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[float, int, str]:
    try:
        score, dataset_id, record_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(score), int(dataset_id), str(record_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("cursor is not one this API returned") from exc


def _item(entry: QueueEntry) -> RecommendationItem:
    return RecommendationItem(
        id=entry.record_id, dataset=entry.dataset, input_uri=entry.input_uri,
        score=entry.score, percentile=entry.percentile, verdict=entry.verdict,
        signals=entry.signals, raw_signals=entry.raw_signals,
        inference_class=entry.inference_class, tags=list(entry.tags), logged_at=entry.logged_at,
    )


@router.get(
    "",
    response_model=RecommendationPage,
    responses={404: {"model": ErrorBody, "description": "No such embedding set."},
               422: {"model": ErrorBody, "description": "Bad parameters or cursor."}},
)
async def recommendations(
    catalog: CatalogDep,
    store: StoreDep,
    embedding_set_key: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    skip: Annotated[int, Query(ge=0)] = 0,
    dataset: Annotated[list[str] | None, Query()] = None,
    inference_class: Annotated[list[str] | None, Query()] = None,
    tags: Annotated[list[str] | None, Query(description="any of these tags")] = None,
    logged_from: datetime | None = None,
    logged_until: datetime | None = None,
    diverse: Annotated[bool, Query(description="skip near-duplicates of items already on "
                                               "the page (greedy max-min)")] = False,
) -> RecommendationPage:
    """Production records most worth labelling, best first, each with its signals."""
    return await run_in_threadpool(
        _page, catalog, store, embedding_set_key, limit, cursor, skip, dataset or [],
        inference_class or [], tags or [], logged_from, logged_until, diverse,
    )


def _page(
    catalog: Catalog, store: FileStore, key: str, limit: int, cursor: str | None, skip: int,
    datasets: list[str], classes: list[str], tags: list[str], logged_from: datetime | None,
    logged_until: datetime | None, diverse: bool,
) -> RecommendationPage:
    catalog.get_embedding_set(key)  # 404 for an unknown set
    queue = catalog.queue
    window = limit * DIVERSE_WINDOW if diverse else limit
    entries = queue.page(
        key, limit=window, after=_decode_cursor(cursor) if cursor else None, skip=skip,
        datasets=datasets, classes=classes, tags=tags, logged_from=logged_from,
        logged_until=logged_until,
    )
    next_cursor = _encode_cursor(entries[-1]) if len(entries) == window else None
    if diverse and len(entries) > limit:
        entries = _diverse(catalog, store, entries, limit)
    state = queue.state(key)
    return RecommendationPage(
        items=[_item(e) for e in entries], next_cursor=next_cursor, total=queue.count(key),
        mhb_version=state.mhb_version if state else None,
        updated_at=state.updated_at if state else None,
    )


def _diverse(catalog: Catalog, store: FileStore, entries: list[QueueEntry],
             limit: int) -> list[QueueEntry]:
    locations = []
    for entry in entries:
        (row,) = catalog.get_records(entry.dataset, [entry.record_id]) or [None]
        locations.append((row.file_path, row.row_index) if row else None)
    keep = [i for i, loc in enumerate(locations) if loc is not None]
    vectors = read_embeddings(store, [locations[i] for i in keep])  # type: ignore[misc]
    scores = np.array([entries[i].score for i in keep])
    chosen = select_diverse(vectors, scores, limit)
    return [entries[keep[i]] for i in chosen]


@router.post(
    "/labelled",
    response_model=LabelledRecords,
    responses={404: {"model": ErrorBody, "description": "No such dataset."}},
)
def mark_labelled(body: MarkLabelled, catalog: CatalogDep) -> LabelledRecords:
    """Take records out of the queue (logging their ``label_class`` does so too)."""
    catalog.get_dataset(body.dataset)
    updated = catalog.queue.mark_labelled(body.dataset, body.ids)
    return LabelledRecords(updated=updated, count=len(updated))
