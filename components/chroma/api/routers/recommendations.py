"""The labelling queue: ``GET /api/v1/recommendations`` and marking records labelled."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

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
from chroma.labelling.queue import QueueFilter, read_page
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
    responses={404: {"model": ErrorBody, "description": "No such dataset."}},
)
def mark_labelled(body: MarkLabelled, catalog: CatalogDep) -> LabelledRecords:
    """Take records out of the queue (logging their ``label_class`` does so too)."""
    catalog.get_dataset(body.dataset)
    updated = catalog.queue.mark_labelled(body.dataset, body.ids)
    return LabelledRecords(updated=updated, count=len(updated))
