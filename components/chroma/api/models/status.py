"""``/api/v1/status``: components, queue depth, index freshness."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from chroma.api.models.operations import OperationPublic

__all__ = ["ComponentPublic", "IndexStatus", "StatusPublic"]


class ComponentPublic(BaseModel):
    name: str
    kind: str = Field(description="api or worker")
    state: str = Field(description="up, down, starting, stopped (down: no heartbeat)")
    pid: int | None
    host: str | None
    uptime_s: float | None
    last_heartbeat: datetime | None
    heartbeat_age_s: float | None
    restarts: int
    operation_kinds: list[str]
    last_error: str | None


class IndexStatus(BaseModel):
    embedding_set_key: str
    index_version: int | None
    indexed_count: int
    indexed_seq: int
    latest_seq: int
    stale: bool
    index_updated_at: datetime | None
    mhb_version: int | None


class StatusPublic(BaseModel):
    mode: str
    version: str
    components: list[ComponentPublic]
    queue_depth: dict[str, int] = Field(description="Queued operations per kind.")
    embedding_sets: list[IndexStatus]
    recent_operations: list[OperationPublic]
