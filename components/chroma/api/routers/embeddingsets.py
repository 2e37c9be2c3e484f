"""Embedding sets: what was logged, its dimension and counts per split."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from chroma.api.deps import CatalogDep
from chroma.api.models import EmbeddingSetPublic, EmbeddingSetsPublic, ErrorBody
from chroma.api.models.params import LimitQuery, NameCursorQuery
from chroma.catalog import EmbeddingSetInfo
from chroma.ingest.validation import MAX_TEXT, NO_NUL_PATTERN

router = APIRouter(prefix="/api/v1/embeddingsets", tags=["embedding sets"])


def _public(info: EmbeddingSetInfo) -> EmbeddingSetPublic:
    return EmbeddingSetPublic(
        key=info.key, fields=info.fields, dimension=info.dimension, distance=info.distance,
        first_log=info.first_log, last_log=info.last_log, counts=info.counts,
    )


@router.get("", response_model=EmbeddingSetsPublic)
def list_embedding_sets(
    catalog: CatalogDep, cursor: NameCursorQuery = None, limit: LimitQuery = 100,
) -> EmbeddingSetsPublic:
    """Embedding sets in key order, a page at a time: key, fields, dimension, first/last
    log and counts."""
    found = catalog.list_embedding_sets(after=cursor, limit=limit)
    data = [_public(info) for info in found]
    next_cursor = found[-1].key if len(found) == limit else None
    return EmbeddingSetsPublic(data=data, count=len(data), next_cursor=next_cursor)


@router.get("/{key}", response_model=EmbeddingSetPublic,
            responses={404: {"model": ErrorBody, "description": "No such embedding set."},
                       422: {"model": ErrorBody,
                             "description": "A key prefix too short or naming several."}})
def get_embedding_set(
    key: Annotated[str, Path(max_length=MAX_TEXT, pattern=NO_NUL_PATTERN,
                             description="Its key or a unique prefix of it (at least 4 "
                                         "characters).")],
    catalog: CatalogDep,
) -> EmbeddingSetPublic:
    """One embedding set; the answer carries its full key."""
    return _public(catalog.get_embedding_set(catalog.resolve_key(key)))
