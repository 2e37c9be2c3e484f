"""The one place where errors become HTTP responses: ``{"error", "message", "details"}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from chroma.api.responses import ORJSONResponse
from chroma.errors import ChromaError

__all__ = ["install_error_handlers"]

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, details: object = None) -> ORJSONResponse:
    body: dict[str, object] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    return ORJSONResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ChromaError)
    async def chroma_error(_: Request, exc: ChromaError) -> ORJSONResponse:
        if exc.status_code >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return error_response(exc.status_code, exc.code, exc.message, exc.details)

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

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> ORJSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the server log")
