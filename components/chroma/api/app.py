"""Assembles the FastAPI app: routers, error handlers, lifespan of the services, and the
body-size limit every request meets (:class:`BodyLimit`)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import chroma
from chroma.api.auth import authorize, document_security, make_guard
from chroma.api.docs import install_docs
from chroma.api.errors import RequestIdMiddleware, error_response, install_error_handlers
from chroma.api.metrics import Metrics, MetricsMiddleware
from chroma.api.responses import ORJSONResponse
from chroma.api.routers import (
    datasets,
    embeddingsets,
    health,
    log,
    maps,
    metrics,
    operations,
    query,
    recommendations,
    status,
)
from chroma.api.services import Services
from chroma.api.strict import reject_unknown_query
from chroma.api.webapp import UI_DIR, mount_webapp
from chroma.ingest.models import LogRequest, RecordIn
from chroma.memory import ReleaseWhenIdle
from chroma.settings import Settings

__all__ = ["BodyLimit", "create_app"]

LOG_PATH = "/api/v1/log"


def create_app(
    settings: Settings | None = None, services: Services | None = None, *, ui_dir: Path = UI_DIR
) -> FastAPI:
    """The app; it opens its :class:`Services` at start-up unless some are given.
    ``ui_dir``: the built web app it serves at ``/ui/`` (``chroma.api.webapp``)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        opened = services or Services.open(settings)
        app.state.services = opened
        app_metrics.watch_catalog(opened.operations)
        opened.commit_listeners.append(app_metrics.observe_commits)
        if owned:
            _freeze_startup_heap()
        try:
            yield
        finally:
            if owned:
                app.state.services.close()

    app = FastAPI(
        title="Chroma service",
        version=chroma.__version__,
        summary="Log model embeddings, index them, rank production inputs worth labelling.",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
        # The scope of each route (chroma.api.auth), then no query parameter it ignores.
        dependencies=[Depends(authorize), Depends(reject_unknown_query)],
        docs_url=None, redoc_url=None,  # served with local assets: chroma.api.docs
    )
    install_docs(app)
    app.state.auth = make_guard(settings)
    app_metrics = Metrics()
    app.state.metrics = app_metrics
    # /log streams its (larger) body itself against max_body_bytes, refusing it mid-way.
    app.add_middleware(BodyLimit, limit=settings.max_json_body_bytes, exempt=(LOG_PATH,))
    app.add_middleware(MetricsMiddleware, metrics=app_metrics)  # counts 413s too
    app.add_middleware(ReleaseWhenIdle)  # a burst's freed heap goes back when it ends
    app.add_middleware(RequestIdMiddleware)  # outermost of ours: it sees every exception
    install_error_handlers(app)
    # Routes are matched in this order, one by one: the most frequent (and most
    # latency-bound) request, a single-vector query, is the first after /health.
    for module in (health, query, log, embeddingsets, datasets, operations, status, metrics,
                   recommendations, maps):
        app.include_router(module.router)
    mount_webapp(app, ui_dir)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class BodyLimit:
    """413 for a request body over ``limit`` bytes, before any of it is parsed.

    Declared sizes (Content-Length) are refused at once; chunked bodies are counted as
    they arrive and refused as soon as they pass the limit. The body read so far is then
    handed to the app as one message: routes parse the whole body anyway."""

    def __init__(self, app: ASGIApp, *, limit: int, exempt: tuple[str, ...] = ()) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(f"body of {int(declared)} bytes", scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._refuse("body", scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _refuse(self, what: str, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "payload_too_large",
            f"{what} larger than the limit of {self.limit} bytes (CHROMA_MAX_JSON_BODY_BYTES)")
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever the client sends next."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _freeze_startup_heap() -> None:
    """Exempt what start-up built (app, models, libraries) from the cyclic GC.

    Without it, every full collection walks those objects again: 80 ms pauses that were
    the p99 of single-record logs (measured with gc.callbacks under bench/ingest.py).
    """
    gc.collect()
    gc.freeze()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the ``/log`` body models (declared by hand for the raw body)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes,
        openapi_version="3.1.0",
    )
    _, defs = models_json_schema(
        [(LogRequest, "validation"), (RecordIn, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(defs.get("$defs", {}))
    # Our handler answers validation errors with ErrorBody, not FastAPI's default shape.
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    schema = _replace_refs(schema, "#/components/schemas/HTTPValidationError",
                           "#/components/schemas/ErrorBody")
    _document_unknown_query(schema)
    app.openapi_schema = document_security(schema)
    return app.openapi_schema


def _document_unknown_query(schema: dict[str, Any]) -> None:
    """Every route answers 422 for a query parameter it does not take (chroma.api.strict)."""
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            operation["responses"].setdefault("422", {
                "description": "Unknown query parameter.",
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorBody"}}}})


def _replace_refs(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: (new if k == "$ref" and v == old else _replace_refs(v, old, new))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_refs(v, old, new) for v in node]
    return node
