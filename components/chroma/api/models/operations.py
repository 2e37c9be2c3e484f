"""``/api/v1/operations``: start, list, read, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chroma.operations.kinds import KIND_NAMES

__all__ = ["OperationCreate", "OperationPublic", "OperationsPublic"]


class OperationCreate(BaseModel):
    """Start an operation. Duplicates of an active one (same kind and set) coalesce."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal[KIND_NAMES]  # type: ignore[valid-type]  # the table of kinds
    embedding_set_key: str | None = Field(
        default=None, description="The embedding set; null: every embedding set.")
    params: dict[str, Any] = Field(default_factory=dict)


class OperationPublic(BaseModel):
    id: int
    kind: str
    embedding_set_key: str | None
    params: dict[str, Any]
    state: str = Field(description="queued, running, succeeded, failed or cancelled")
    progress: float
    message: str | None
    attempts: int
    max_attempts: int
    requested_by: str
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    result: dict[str, Any] | None
    error: str | None


class OperationsPublic(BaseModel):
    data: list[OperationPublic]
    count: int
