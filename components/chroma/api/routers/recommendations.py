"""The labelling queue: ``GET /api/v1/recommendations`` and marking records labelled."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from chroma.api.deps import CatalogDep, StoreDep
from chroma.api.models import (
    BODY_ERRORS,
    ErrorBody,
    LabelledRecords,
    MarkLabelled,
    RecommendationItem,
    RecommendationPage,
)
from chroma.api.models.params import (
    DatasetNameText,
    EmbeddingSetKeyText,
    ShortText,
    TagText,
)
from chroma.catalog import Catalog, QueueEntry
from chroma.errors import InvalidInput
from chroma.ingest.validation import NO_NUL_PATTERN
from chroma.labelling.queue import QueueFilter, decode_cursor, read_page
from chroma.storage import FileStore

router = APIRouter(prefix="/api/v1/recommendations", tags=["recommendations"])

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
    embedding_set_key: Annotated[EmbeddingSetKeyText, Query()],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024, pattern=r"^[A-Za-z0-9_=-]*$",
                                        description="next_cursor of the previous page")] = None,
    skip: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    dataset: Annotated[list[DatasetNameText] | None, Query(max_length=100)] = None,
    inference_class: Annotated[list[ShortText] | None, Query(max_length=100)] = None,
    tags: Annotated[list[TagText] | None, Query(max_length=100,
                                                description="any of these tags")] = None,
    logged_from: datetime | None = None,
    logged_until: datetime | None = None,
    diverse: Annotated[bool, Query(description="skip near-duplicates of items already on "
                                               "the page (greedy max-min)")] = False,
) -> RecommendationPage:
    """Production records most worth labelling, best first, each with its signals."""
    if cursor:
        _check_cursor(cursor)
    return await run_in_threadpool(
        _page, catalog, store, embedding_set_key, limit, cursor, skip, dataset or [],
        inference_class or [], tags or [], logged_from, logged_until, diverse,
    )


def _check_cursor(cursor: str) -> None:
    """A cursor decodes to values the catalog can compare: refuse forged ones (422)."""
    score, dataset_id, record_id = decode_cursor(cursor)
    if not (math.isfinite(score) and 0 <= dataset_id < 2**31
            and re.fullmatch(NO_NUL_PATTERN, record_id) and len(record_id) <= 256):
        raise InvalidInput("cursor is not one this API returned")


def _page(
    catalog: Catalog, store: FileStore, key: str, limit: int, cursor: str | None, skip: int,
    datasets: list[str], classes: list[str], tags: list[str], logged_from: datetime | None,
    logged_until: datetime | None, diverse: bool,
) -> RecommendationPage:
    key = catalog.resolve_key(key)
    page = read_page(catalog, store, key, limit=limit, cursor=cursor, skip=skip,
                     where=QueueFilter(datasets, classes, tags, logged_from, logged_until),
                     diverse=diverse)
    return RecommendationPage(
        items=[_item(e) for e in page.entries], next_cursor=page.next_cursor, total=page.total,
        mhb_version=page.state.mhb_version if page.state else None,
        updated_at=page.state.updated_at if page.state else None,
    )


@router.post(
    "/labelled",
    response_model=LabelledRecords,
    responses={**BODY_ERRORS, 404: {"model": ErrorBody, "description": "No such dataset."}},
)
def mark_labelled(body: MarkLabelled, catalog: CatalogDep) -> LabelledRecords:
    """Take records out of the queue (logging their ``label_class`` does so too)."""
    catalog.get_dataset(body.dataset)
    updated = catalog.queue.mark_labelled(body.dataset, body.ids)
    return LabelledRecords(updated=updated, count=len(updated))
