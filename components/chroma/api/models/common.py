"""Shapes every resource shares: the error body, liveness and readiness."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["BODY_ERRORS", "ErrorBody", "Health", "Readiness"]


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer."""

    error: str = Field(description="Machine-readable code, e.g. invalid_input, conflict.")
    message: str = Field(description="What went wrong and what to fix.")
    details: Any | None = None
    request_id: str | None = Field(
        default=None, description="The request's id, also in the X-Request-ID header and "
        "on the server's log lines for it: quote it when reporting a problem.")


BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON body."},
    413: {"model": ErrorBody, "description": "Body larger than CHROMA_MAX_JSON_BODY_BYTES."},
    422: {"model": ErrorBody, "description": "Invalid parameters or body."},
}
"""The answers every route that reads a JSON body may give (merged into its responses)."""


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(description="ready or unavailable")
    checks: dict[str, str] = Field(
        description="component -> ok or unavailable (the cause is in the server log)")
