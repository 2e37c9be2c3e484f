"""``GET /api/v1/map``: the 2-D map of an embedding set, or the operation computing it."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from chroma.api.deps import CatalogDep, ServicesDep
from chroma.api.models import ErrorBody, MapPending, MapReady
from chroma.api.models.params import EmbeddingSetKeyText
from chroma.api.responses import ORJSONResponse
from chroma.api.services import Services
from chroma.catalog import Catalog
from chroma.labelling.projection import MapTable, map_version

router = APIRouter(prefix="/api/v1/map", tags=["map"])

DEFAULT_LIMIT = 200_000
MAX_LIMIT = 2_000_000
PROJECT = "project"


@router.get(
    "",
    response_model=MapReady,
    responses={
        202: {"model": MapPending,
              "description": "No map of the set's current data yet: the `project` operation "
                             "computing it was queued (or joined)."},
        404: {"model": ErrorBody, "description": "No such embedding set."},
    },
)
async def get_map(
    catalog: CatalogDep,
    services: ServicesDep,
    embedding_set_key: Annotated[EmbeddingSetKeyText, Query()],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=(
        "At most this many points; a larger map is subsampled, the same points every "
        "time (a hash of each record's dataset and id)."))] = DEFAULT_LIMIT,
) -> Response:
    """The map (PCA) of the set's training and production embeddings at its current data
    version (200), or 202 with the operation computing it: poll that, then ask again."""
    found = await run_in_threadpool(_current, catalog, services, embedding_set_key)
    if found is None:
        operation, created = await run_in_threadpool(
            services.operations.enqueue, PROJECT, embedding_set_key, requested_by="map")
        if created:
            services.launcher.submit(operation)
        body = MapPending(embedding_set_key=embedding_set_key, status="pending",
                          operation_id=operation.id)
        return ORJSONResponse(body.model_dump(mode="json"), status_code=202)
    content = await run_in_threadpool(_render, embedding_set_key, found, limit)
    return Response(content, media_type="application/json")


def _current(catalog: Catalog, services: Services, key: str) -> MapTable | None:
    catalog.get_embedding_set(key)  # 404 first
    return services.maps.get(key, map_version(catalog, key))


def _render(key: str, found: MapTable, limit: int) -> bytes:
    points = found.points(limit)
    return orjson.dumps({
        "embedding_set_key": key, "status": "ready", "method": found.method,
        "version": found.version, "computed_at": found.computed_at,
        "count": len(points["id"]), "total": len(found), "points": points,
    }, option=orjson.OPT_SERIALIZE_NUMPY)
