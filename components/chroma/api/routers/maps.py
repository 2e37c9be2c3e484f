"""``GET /api/v1/map``: the 2-D map of an embedding set, or the operation computing it."""

from __future__ import annotations

import gzip
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from chroma.api.deps import CatalogDep, ServicesDep
from chroma.api.models import ErrorBody, MapPending, MapReady
from chroma.api.models.params import EmbeddingSetKeyText
from chroma.api.responses import ORJSONResponse
from chroma.api.services import Services
from chroma.catalog import Catalog, Operation
from chroma.labelling.projection import MapTable, map_version

router = APIRouter(prefix="/api/v1/map", tags=["map"])

DEFAULT_LIMIT = 200_000
MAX_LIMIT = 2_000_000
PROJECT = "project"
FAILED_RETRY_AFTER_S = 60.0
"""A map whose computation failed (all its attempts) this recently answers that failed
operation, whose error says why, instead of queueing another: a client polling the map
of a set that cannot be projected would otherwise start a failing run at every poll."""


@router.get(
    "",
    response_model=MapReady,
    responses={
        202: {"model": MapPending,
              "description": "No map of the set's current data yet: the `project` operation "
                             "computing it was queued (or joined). Within a minute of a "
                             "computation that failed, that failed operation instead: its "
                             "`error` says why."},
        404: {"model": ErrorBody, "description": "No such embedding set."},
    },
)
async def get_map(
    request: Request,
    catalog: CatalogDep,
    services: ServicesDep,
    embedding_set_key: Annotated[EmbeddingSetKeyText, Query()],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=(
        "At most this many points; a larger map is subsampled, the same points every "
        "time (a hash of each record's dataset and id)."))] = DEFAULT_LIMIT,
    stale: Annotated[bool, Query(description=(
        "Without a map of the current data, answer the newest older one (200, "
        "`stale: true`) while the current one is computed, rather than 202. For sets "
        "logged to all the time, whose data is never still long enough."))] = False,
) -> Response:
    """The map (PCA) of the set's training and production embeddings at its current data
    version (200), or 202 with the operation computing it: poll that, then ask again."""
    gzipped = "gzip" in request.headers.get("accept-encoding", "")
    found = await run_in_threadpool(_current, catalog, services, embedding_set_key)
    if found is not None:
        return await run_in_threadpool(_answer, embedding_set_key, found, limit, None, gzipped)
    operation = await run_in_threadpool(_recent_failure, services, embedding_set_key)
    if operation is None:
        operation, created = await run_in_threadpool(
            services.operations.enqueue, PROJECT, embedding_set_key, requested_by="map")
        if created:
            services.launcher.submit(operation)
    older = await run_in_threadpool(services.maps.newest, embedding_set_key) if stale else None
    if older is not None:
        return await run_in_threadpool(_answer, embedding_set_key, older, limit, operation.id,
                                       gzipped)
    body = MapPending(embedding_set_key=embedding_set_key, status="pending",
                      operation_id=operation.id)
    return ORJSONResponse(body.model_dump(mode="json"), status_code=202)


def _recent_failure(services: Services, key: str) -> Operation | None:
    """The set's latest ``project`` operation, if it failed less than a minute ago."""
    latest = services.operations.list(kind=PROJECT, embedding_set_key=key, limit=1)
    if not latest or latest[0].state != "failed" or latest[0].finished_at is None:
        return None
    age = (datetime.now(UTC) - latest[0].finished_at).total_seconds()
    return latest[0] if age < FAILED_RETRY_AFTER_S else None


def _current(catalog: Catalog, services: Services, key: str) -> MapTable | None:
    catalog.get_embedding_set(key)  # 404 first
    return services.maps.get(key, map_version(catalog, key))


_BODIES: OrderedDict[tuple[str, str, int, int | None, bool], bytes] = OrderedDict()
_BODIES_LOCK = threading.Lock()
BODIES_KEPT = 4
"""Rendered answers kept (a map is immutable: the same request gets the same bytes; at
100k points rendering is most of a request, and gzip is worth it: 7.3 MiB -> 1.5 MiB)."""


def _answer(key: str, found: MapTable, limit: int, refreshing: int | None, gzipped: bool
            ) -> Response:
    """The 200 answer, gzip-compressed when the client accepts it, from the cache."""
    cache_key = (key, found.version, limit, refreshing, gzipped)
    with _BODIES_LOCK:
        body = _BODIES.get(cache_key)
        if body is not None:
            _BODIES.move_to_end(cache_key)
    if body is None:
        body = _render(key, found, limit, refreshing)
        if gzipped:
            body = gzip.compress(body, compresslevel=5)
        with _BODIES_LOCK:
            _BODIES[cache_key] = body
            while len(_BODIES) > BODIES_KEPT:
                _BODIES.popitem(last=False)
    headers = {"Vary": "Accept-Encoding"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/json", headers=headers)


def _render(key: str, found: MapTable, limit: int, refreshing: int | None = None) -> bytes:
    """The 200 body; ``refreshing``: the operation computing a newer map (stale)."""
    points = found.points(limit)
    return orjson.dumps({
        "embedding_set_key": key, "status": "ready", "method": found.method,
        "version": found.version, "computed_at": found.computed_at,
        "count": len(points["id"]), "total": len(found), "stale": refreshing is not None,
        "operation_id": refreshing, "points": points,
    }, option=orjson.OPT_SERIALIZE_NUMPY)
