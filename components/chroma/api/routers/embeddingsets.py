"""Embedding sets: what was logged, its dimension and counts per split."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from chroma.api.deps import CatalogDep
from chroma.api.models import EmbeddingSetPublic, EmbeddingSetsPublic, ErrorBody
from chroma.catalog import EmbeddingSetInfo
from chroma.ingest.validation import MAX_TEXT, NO_NUL_PATTERN

router = APIRouter(prefix="/api/v1/embeddingsets", tags=["embedding sets"])


def _public(info: EmbeddingSetInfo) -> EmbeddingSetPublic:
    return EmbeddingSetPublic(
        key=info.key, fields=info.fields, dimension=info.dimension, distance=info.distance,
        first_log=info.first_log, last_log=info.last_log, counts=info.counts,
    )


@router.get("", response_model=EmbeddingSetsPublic)
def list_embedding_sets(catalog: CatalogDep) -> EmbeddingSetsPublic:
    """Every embedding set with its key, fields, dimension, first/last log and counts."""
    data = [_public(info) for info in catalog.list_embedding_sets()]
    return EmbeddingSetsPublic(data=data, count=len(data))


@router.get("/{key}", response_model=EmbeddingSetPublic,
            responses={404: {"model": ErrorBody, "description": "No such embedding set."}})
def get_embedding_set(
    key: Annotated[str, Path(max_length=MAX_TEXT, pattern=NO_NUL_PATTERN)], catalog: CatalogDep
) -> EmbeddingSetPublic:
    return _public(catalog.get_embedding_set(key))
