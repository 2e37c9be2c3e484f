"""``/api/v1/operations``: start, list, read, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chroma.api.models.params import EmbeddingSetKeyText
from chroma.operations.kinds import KIND_NAMES

__all__ = ["OperationCreate", "OperationPublic", "OperationsPublic"]


class OperationCreate(BaseModel):
    """Start an operation. Duplicates of an active one (same kind and set) coalesce."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal[KIND_NAMES]  # type: ignore[valid-type]  # the table of kinds
    embedding_set_key: EmbeddingSetKeyText | None = Field(
        default=None, description="The embedding set: its key or a unique prefix of it (at least 4 "
        "characters); null: every embedding set.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The kind's parameters; numbers of magnitude below 2**63, no NUL "
        "characters (sleep: seconds <= 3600).")


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
    count: int = Field(description="Operations on this page.")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last.")
