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
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi import routing as fastapi_routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from chroma.api.auth import authorize, bearer
from chroma.api.models import BODY_ERRORS, ErrorBody
from chroma.api.models.query import QueryFilter, QueryRequest, QueryResponse
from chroma.api.services import Services
from chroma.api.strict import reject_unknown_query
from chroma.catalog import Catalog, Operations
from chroma.errors import ChromaError, InvalidInput, NotFound
from chroma.index import Neighbour, SearchFilter
from chroma.index.hosting import answers_at_once, open_reader
from chroma.keys import embedding_set_key
from chroma.search import (
    Found,
    Hit,
    IndexNotBuilt,
    check_queries,
    find,
    live_hits,
    record_vector,
)


class _OrjsonBodyRoute(APIRoute):
    """Parses a JSON body with orjson before FastAPI would with ``json.loads`` (a query's
    128 floats took 0.16 ms in ``json.loads``, a tenth of that in orjson). A body orjson
    refuses (e.g. a ``NaN`` literal, which ``json.loads`` takes) is left to FastAPI, so
    every answer, error or not, stays what it was.

    The query route goes further: a body its model accepts is validated here and handed
    straight to the endpoint after the app's own dependencies (``_GATES``), without
    FastAPI's dependency solving (an in-process ASGI call of the route: 96 -> 58 us). A
    body the model refuses goes the FastAPI way, which validates it again and answers its
    usual 422; a route with any other dependency always goes that way."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        gates = _DIRECT_GATES[self.endpoint] = _gates_of(_effective_dependant(self))

        async def parse_then_handle(request: Request) -> Response:
            if request.headers.get("content-type", "").startswith("application/json"):
                body = await request.body()
                if body:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        request._json = orjson.loads(body)  # what Request.json() returns
                    model = _DIRECT.get(self.endpoint) if gates is not None else None
                    if model is not None and type(getattr(request, "_json", None)) is dict:
                        try:
                            valid = model.model_validate(request._json)
                        except ValidationError:
                            pass  # FastAPI's way below says what is wrong, as ever
                        else:
                            for gate in gates or ():
                                await gate(request)
                            return await self.endpoint(valid, request)  # type: ignore[no-any-return]
            return await handler(request)

        return parse_then_handle


_DIRECT: dict[Callable[..., Any], type[BaseModel]] = {}
"""Endpoints ``(body: model, request: Request)`` that take a body validated here."""

Gate = Callable[[Request], Coroutine[Any, Any, None]]
_DIRECT_GATES: dict[Callable[..., Any], list[Gate] | None] = {}
"""What the last handler built for each endpoint runs on its direct path (``None``: no
direct path); for tests."""


async def _authorize(request: Request) -> None:
    await authorize(request, await bearer(request))


_GATES: dict[Callable[..., Any], Gate] = {authorize: _authorize,
                                          reject_unknown_query: reject_unknown_query}
"""The app's own dependencies (``create_app``), as the direct path runs them, in order."""


def _effective_dependant(route: APIRoute) -> Dependant | None:
    """The dependencies FastAPI will solve for ``route`` as the app serves it: since
    FastAPI 0.16x an included route is built in an "effective context" holding the app's
    and the routers' dependencies, which only a private context variable names while its
    handler is built. ``None`` (no direct path) where that is not how it works."""
    holder = getattr(fastapi_routing, "_effective_route_context_var", None)
    context = holder.get() if holder is not None else None
    if context is None or getattr(context, "original_route", None) is not route:
        return None  # a route not (yet) included in an app: FastAPI's way
    dependant = getattr(context, "dependant", None)
    return dependant if isinstance(dependant, Dependant) else None


def _gates_of(dependant: Dependant | None) -> list[Gate] | None:
    """What the direct path must run before the endpoint: the route's dependencies, when
    each is one of ``_GATES``; ``None`` (no direct path) when any other is there, so a
    dependency added later is never skipped."""
    if dependant is None:
        return None
    gates = []
    for dependency in dependant.dependencies:
        gate = _GATES.get(dependency.call)  # type: ignore[arg-type]
        if gate is None:
            return None
        gates.append(gate)
    return gates


router = APIRouter(prefix="/api/v1", tags=["query"], route_class=_OrjsonBodyRoute)

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
async def query(body: QueryRequest, request: Request) -> Response:
    """The ``k`` nearest records to each query vector, nearest first, with filters."""
    services: Services = request.app.state.services  # no dependency: FastAPI's cost more
    quick = _search_at_once(body, services)
    if quick is None:
        return await run_in_threadpool(_query, body, services)
    key, distance, found = quick
    if found.verify:  # a delete or tag change in flight: the catalog, off the event loop
        hits = await run_in_threadpool(live_hits, services.catalog, found, body.k)
        return _answer(key, distance, hits)
    return _answer_from_index(key, distance, found, body.k)


_DIRECT[query] = QueryRequest


def _search_at_once(body: QueryRequest, services: Services) -> tuple[str, str, Found] | None:
    """One vector searched right here on the event loop, when that costs no waiting: the
    embedded index host answers in a millisecond, and the set's shape is cached. A
    thread hop (and back) cost more than the search on a busy machine. ``None``: ask
    from the thread pool, where waiting for a host or the catalog is fine."""
    if body.embedding is None:
        return None
    key = body.embedding_set_key or (
        embedding_set_key(body.embedding_set) if body.embedding_set is not None else None)
    shape = services.catalog.live.cached_shape(key) if key is not None else None
    if key is None or shape is None:
        return None
    reader = open_reader(services.settings, operations=services.operations)
    if not answers_at_once(reader):
        return None
    queries = check_queries([body.embedding], shape[0], key)
    try:
        found = find(reader, key, queries, body.k, _search_filter(body.filter, ()), wait=False,
                     hnsw_ef=body.hnsw_ef)
    except ChromaError:  # not built, host down or slow: the thread pool path says why
        return None
    return key, shape[1], found


def _query(body: QueryRequest, services: Services) -> Response:
    catalog, operations = services.catalog, services.operations
    key = _resolve_key(body, catalog)
    dimension, distance = catalog.live.shape(key)
    if dimension is None:
        raise NotFound(f"embedding set {key} has no records yet")
    exclude: tuple[tuple[str, str], ...] = ()
    if body.record_id is not None:
        assert body.dataset is not None
        queries = record_vector(catalog, services.store, key, body.dataset, body.record_id)
        exclude = ((body.dataset, body.record_id),)
    else:
        vectors = [body.embedding] if body.embedding is not None else body.embeddings or []
        queries = check_queries(vectors, dimension, key)
    search_filter = _search_filter(body.filter, exclude)
    reader = open_reader(services.settings, operations=operations)
    try:
        found = find(reader, key, queries, body.k, search_filter, hnsw_ef=body.hnsw_ef)
    except IndexNotBuilt:
        _queue_index(operations, key)
        raise
    if found.verify:
        return _answer(key, distance, live_hits(catalog, found, body.k))
    return _answer_from_index(key, distance, found, body.k)


def _answer(key: str, distance: str, hits: list[list[Hit]]) -> Response:
    answer = {"embedding_set_key": key, "distance": distance,
              "results": [{"neighbours": [_neighbour(h) for h in row]} for row in hits]}
    return Response(orjson.dumps(answer), media_type="application/json")


def _answer_from_index(key: str, distance: str, found: Found, k: int) -> Response:
    """The answer straight from the index's hits (nothing to check against the catalog):
    from each hit's stored payload, with no ``Hit`` or index ``Neighbour`` in between,
    which cost as much as the rest of the answer in a batch."""
    answer = {"embedding_set_key": key, "distance": distance,
              "results": [{"neighbours": [_from_stored(d, p) for d, p in row[:k]]}
                          for row in found.rows]}
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
    return _from_index(hit.neighbour, hit.distance)


def _from_index(n: Neighbour, distance: float) -> dict[str, Any]:
    """One ``Neighbour`` of the contract from the index's hit."""
    return _from_stored(distance, n.payload)


def _from_stored(distance: float, payload: dict[str, Any]) -> dict[str, Any]:
    """One ``Neighbour`` of the contract from a hit's stored payload (absent optional
    fields are ``None``, no tags). ``logged_at`` stays a ``datetime``: orjson writes it
    as ``isoformat()`` would, in a third of the time."""
    return {"id": payload["record_id"], "dataset": payload["dataset"],
            "split": payload["split"], "distance": distance,
            "input_uri": payload.get("input_uri"),
            "payload": {"inference_class": payload.get("inference_class"),
                        "label_class": payload.get("label_class"),
                        "tags": payload.get("tags") or [],  # a JSON list, never a tuple
                        "logged_at": datetime.fromtimestamp(payload.get("logged_at", 0.0), UTC)}}


def _resolve_key(body: QueryRequest, catalog: Catalog) -> str:
    if body.embedding_set_key is not None:
        if catalog.live.cached_shape(body.embedding_set_key) is not None:
            # A full key this process has searched before: sets are never deleted, so no
            # round trip (a batch of 100 vectors paid one per request).
            return body.embedding_set_key
        return catalog.resolve_key(body.embedding_set_key)
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
