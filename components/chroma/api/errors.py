"""The one place where errors become HTTP responses: ``{"error", "message", "details"}``.

A 500 or 503 answers a generic message with a request id; the error itself (which may
name files, hosts or a database's words) goes to the server log under that id.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from chroma.api.responses import ORJSONResponse
from chroma.errors import ChromaError, Unauthorized, Unavailable, UnsupportedVersion

__all__ = ["install_error_handlers"]

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, details: object = None) -> ORJSONResponse:
    body: dict[str, object] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    return ORJSONResponse(body, status_code=status)


def request_id(request: Request) -> str:
    """The request's id (set by a middleware, or given by the caller), else a new one."""
    given = getattr(request.state, "request_id", None) or request.headers.get("x-request-id")
    return str(given)[:64] if given else uuid.uuid4().hex


def public_message(exc: ChromaError) -> str | None:
    """What a 500/503 may tell the caller (the rest is logged), or ``None`` when the
    error's own message is meant for the caller (4xx, 501)."""
    if isinstance(exc, UnsupportedVersion):
        return "a backing service runs an unsupported version; see the server log"
    if isinstance(exc, Unavailable):
        return "a backing service (catalog, store or index) is unavailable; retry later"
    if exc.status_code == 500:
        return "internal error; see the server log"
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ChromaError)
    async def chroma_error(request: Request, exc: ChromaError) -> ORJSONResponse:
        generic = public_message(exc)
        if generic is not None:
            rid = request_id(request)
            log.warning("%s (request %s): %s", exc.code, rid, exc.message)
            return error_response(exc.status_code, exc.code, f"{generic} (request id {rid})")
        response = error_response(exc.status_code, exc.code, exc.message, exc.details)
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> ORJSONResponse:
        details = [
            {"loc": [str(p) for p in err["loc"]], "msg": err["msg"]} for err in exc.errors()[:20]
        ]
        summary = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:3])
        return error_response(422, "invalid_input", f"invalid request: {summary}", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> ORJSONResponse:
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> ORJSONResponse:
        rid = request_id(request)
        log.exception("unhandled error (request %s)", rid)
        return error_response(500, "internal_error",
                              f"internal error; see the server log (request id {rid})")
