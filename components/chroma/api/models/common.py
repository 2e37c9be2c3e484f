"""Shapes every resource shares: the error body, liveness and readiness."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ErrorBody", "Health", "Readiness"]


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer."""

    error: str = Field(description="Machine-readable code, e.g. invalid_input, conflict.")
    message: str = Field(description="What went wrong and what to fix.")
    details: Any | None = None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(description="ready or unavailable")
    checks: dict[str, str] = Field(
        description="component -> ok or unavailable (the cause is in the server log)")
