"""Liveness and readiness probes: open to anyone (no API key), so they say what is down,
never why (the why, which may name hosts or paths, goes to the server log)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from chroma.api.deps import ServicesDep
from chroma.api.models import Health, Readiness
from chroma.api.responses import ORJSONResponse
from chroma.errors import ChromaError, NotFound
from chroma.settings import Settings

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A backing service is unreachable."}},
)
async def ready(services: ServicesDep) -> ORJSONResponse:
    """200 once the catalog and the store are reachable, else 503 saying which is not."""
    checks: dict[str, str] = {}
    probes = [("catalog", services.db.check), ("store", services.store.check)]
    if services.settings.index_backend == "remote":  # a server we cannot work without
        probes.append(("index", lambda: probe_index(services.settings)))
    for name, probe in probes:
        try:
            await run_in_threadpool(probe)
            checks[name] = "ok"
        except ChromaError as exc:
            log.warning("readiness: %s unavailable: %s", name, exc.message)
            checks[name] = "unavailable (see the server log)"
    ok = all(value == "ok" for value in checks.values())
    body = Readiness(status="ready" if ok else "unavailable", checks=checks)
    return ORJSONResponse(body.model_dump(), status_code=200 if ok else 503)


def probe_index(settings: Settings) -> None:
    """Raise ``Unavailable`` unless the Qdrant server answers (any answer will do).

    Embedded mode is not probed: its index is hosted by the indexer worker, which
    ``chroma run`` starts beside the API, and writes do not need it."""
    from chroma.index.hosting import open_reader

    try:
        open_reader(settings).count("chroma-ready-probe")
    except NotFound:
        return
