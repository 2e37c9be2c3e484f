"""``POST /api/v1/query``: k nearest neighbours by vector(s) or by a stored record.

HTTP only: the search itself is ``chroma.search.search_live``, which reads through
``chroma.index.hosting.open_reader`` (the index host in embedded mode, the Qdrant server
in the cluster) and checks the hits against the catalog while a delete or a tag change
may not be in the index yet, so a deleted record is never answered and tags and classes
are current. Filters apply to what the index holds.

The answer is encoded with orjson from plain dicts (``response_model`` still documents
it): validating and serialising the pydantic models cost more than the search.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Response

from chroma.api.deps import CatalogDep, OperationsDep, SettingsDep, StoreDep
from chroma.api.models import BODY_ERRORS, ErrorBody
from chroma.api.models.query import QueryFilter, QueryRequest, QueryResponse
from chroma.catalog import Catalog, Operations
from chroma.errors import InvalidInput, NotFound
from chroma.index import SearchFilter
from chroma.index.hosting import open_reader
from chroma.keys import embedding_set_key
from chroma.search import Hit, IndexNotBuilt, check_queries, record_vector, search_live

router = APIRouter(prefix="/api/v1", tags=["query"])

@router.post(
    "/query",
    response_model=QueryResponse,
    responses={
        **BODY_ERRORS,
        404: {"model": ErrorBody, "description": "Unknown embedding set, dataset or record."},
        422: {"model": ErrorBody,
              "description": "Bad request, e.g. a vector of the wrong dimension."},
        503: {"model": ErrorBody, "description": "The index is unreachable or not built yet."},
    },
)
def query(
    body: QueryRequest, catalog: CatalogDep, store: StoreDep, settings: SettingsDep,
    operations: OperationsDep,
) -> Response:
    """The ``k`` nearest records to each query vector, nearest first, with filters."""
    key = _resolve_key(body, catalog)
    dimension, distance = catalog.live.shape(key)
    if dimension is None:
        raise NotFound(f"embedding set {key} has no records yet")
    exclude: tuple[tuple[str, str], ...] = ()
    if body.record_id is not None:
        assert body.dataset is not None
        queries = record_vector(catalog, store, key, body.dataset, body.record_id)
        exclude = ((body.dataset, body.record_id),)
    else:
        vectors = [body.embedding] if body.embedding is not None else body.embeddings or []
        queries = check_queries(vectors, dimension, key)
    search_filter = _search_filter(body.filter, exclude)
    reader = open_reader(settings, operations=operations)
    try:
        hits = search_live(catalog, reader, key, queries, body.k, search_filter)
    except IndexNotBuilt:
        _queue_index(operations, key)
        raise
    answer = {"embedding_set_key": key, "distance": distance,
              "results": [{"neighbours": [_neighbour(h) for h in row]} for row in hits]}
    return Response(orjson.dumps(answer), media_type="application/json")


def _neighbour(hit: Hit) -> dict[str, Any]:
    """One ``Neighbour`` of the contract, from the catalog's record or the index's hit."""
    if hit.record is not None:
        record = hit.record
        return {"id": record.record_id, "dataset": record.dataset, "split": record.split,
                "distance": hit.distance, "input_uri": record.input_uri,
                "payload": {"inference_class": record.inference_class,
                            "label_class": record.label_class, "tags": list(record.tags),
                            "logged_at": record.logged_at.isoformat()}}
    assert hit.neighbour is not None
    n = hit.neighbour
    payload = n.payload
    logged_at = datetime.fromtimestamp(float(payload.get("logged_at", 0.0)), UTC)
    return {"id": n.record_id, "dataset": n.dataset, "split": n.split, "distance": hit.distance,
            "input_uri": n.input_uri,
            "payload": {"inference_class": payload.get("inference_class"),
                        "label_class": payload.get("label_class"),
                        "tags": list(payload.get("tags") or ()),
                        "logged_at": logged_at.isoformat()}}


def _resolve_key(body: QueryRequest, catalog: Catalog) -> str:
    if body.embedding_set_key is not None:
        return body.embedding_set_key
    if body.embedding_set is not None:
        return embedding_set_key(body.embedding_set)
    if body.record_id is not None and body.dataset is not None:
        key = catalog.get_dataset(body.dataset).embedding_set_key
        if key is not None:
            return key
    raise InvalidInput("name the embedding set: embedding_set_key or embedding_set")


def _search_filter(given: QueryFilter | None, exclude: tuple[tuple[str, str], ...]) -> SearchFilter:
    if given is None:
        return SearchFilter(exclude=exclude)

    def either(one: str | None, many: list[str] | None) -> tuple[str, ...]:
        return tuple(([one] if one is not None else []) + list(many or []))

    return SearchFilter(
        datasets=either(given.dataset, given.datasets),
        split=given.split,
        inference_classes=either(given.inference_class, given.inference_classes),
        label_classes=either(given.label_class, given.label_classes),
        tags_any=tuple(given.tags or ()),
        logged_from=given.logged_from.timestamp() if given.logged_from else None,
        logged_until=given.logged_until.timestamp() if given.logged_until else None,
        exclude=exclude,
    )


def _queue_index(operations: Operations, key: str) -> None:
    with contextlib.suppress(Exception):  # the 503 is the answer either way
        operations.enqueue("index", key, requested_by="query")
