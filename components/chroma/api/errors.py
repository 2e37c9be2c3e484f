"""The one place where errors become HTTP responses: ``{"error", "message", "details",
"request_id"}``.

:class:`RequestIdMiddleware` gives each request an id (the client's ``X-Request-ID`` if
it sent a sane one), answers it in the ``X-Request-ID`` header and in error bodies, and
puts it on every log record made while serving it (:data:`chroma.logs.request_id`). It is
also where an unexpected exception becomes a 500, logged once with its traceback: an
``Exception`` handler would sit in Starlette's ServerErrorMiddleware, which re-raises
after answering, so uvicorn logged each 500 a second time.

A 500 or 503 answers a generic message with the request id; the error itself (which may
name files, hosts or a database's words) goes to the server log under that id.
"""

from __future__ import annotations

import logging
import re
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chroma.api.responses import ORJSONResponse
from chroma.errors import ChromaError, Unauthorized, Unavailable, UnsupportedVersion
from chroma.logs import request_id

__all__ = ["REQUEST_ID_HEADER", "RequestIdMiddleware", "install_error_handlers"]

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # a client's id goes into logs verbatim


def error_response(status: int, code: str, message: str, details: object = None) -> ORJSONResponse:
    body: dict[str, object] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    if (current := request_id.get()) is not None:
        body["request_id"] = current
    return ORJSONResponse(body, status_code=status)


class RequestIdMiddleware:
    """Names each request, and turns an exception no handler took into one logged 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id_of(scope)
        token = request_id.set(rid)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (REQUEST_ID_HEADER.lower().encode(), rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not started:  # else the client sees a cut response; nothing more to send
                response = error_response(500, "internal_error",
                                          "internal error; see the server log")
                await response(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


def _request_id_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _SANE_ID.fullmatch(given):
                return given
    return uuid.uuid4().hex


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
    async def chroma_error(_: Request, exc: ChromaError) -> ORJSONResponse:
        generic = public_message(exc)
        if generic is not None:
            rid = request_id.get() or "-"
            log.warning("%s: %s", exc.code, exc.message)
            return error_response(exc.status_code, exc.code, f"{generic} (request id {rid})")
        response = error_response(exc.status_code, exc.code, exc.message, exc.details)
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> ORJSONResponse:
        malformed = next((e for e in exc.errors() if e.get("type") == "json_invalid"), None)
        if malformed is not None:  # as /log answers: the body cannot be read at all
            return error_response(400, "malformed_body", f"malformed JSON: {malformed['msg']}")
        details = [
            {"loc": [str(p) for p in err["loc"]], "msg": err["msg"]} for err in exc.errors()[:20]
        ]
        summary = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:3])
        return error_response(422, "invalid_input", f"invalid request: {summary}", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> ORJSONResponse:
        return error_response(exc.status_code, "http_error", str(exc.detail))
