"""Response and request models of the REST API: the contract that shapes the OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chroma.ingest.models import EmbeddingSetFields, LogRequest, RecordIn
from chroma.operations.kinds import KIND_NAMES

__all__ = [
    "ComponentPublic",
    "DatasetPublic",
    "DatasetRegister",
    "DatasetsPublic",
    "DeleteRecords",
    "DeletedRecords",
    "EmbeddingSetPublic",
    "EmbeddingSetsPublic",
    "ErrorBody",
    "Health",
    "IndexStatus",
    "LabelledRecords",
    "LogRequest",
    "LogResult",
    "MarkLabelled",
    "OperationCreate",
    "OperationPublic",
    "OperationsPublic",
    "Readiness",
    "RecommendationItem",
    "RecommendationPage",
    "RecordIn",
    "RecordPublic",
    "RecordsPage",
    "StatusPublic",
    "TagRecords",
    "TaggedRecords",
]


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer."""

    error: str = Field(description="Machine-readable code, e.g. invalid_input, conflict.")
    message: str = Field(description="What went wrong and what to fix.")
    details: Any | None = None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(description="ready or unavailable")
    checks: dict[str, str] = Field(description="component -> ok or the error")


class LogResult(BaseModel):
    """Answer to ``POST /log``: 201 when committed (202: committed, assessment pending)."""

    embedding_set_key: str
    ids: list[str]
    count: int
    assessments: list[dict[str, Any]] | None = Field(
        default=None, description="Per production record, when the recommender is ready."
    )


class EmbeddingSetPublic(BaseModel):
    key: str
    fields: dict[str, Any]
    dimension: int | None = Field(description="Fixed by the first record; null before it.")
    distance: str
    first_log: datetime | None
    last_log: datetime | None
    counts: dict[str, int] = Field(description="Records per split (training, production).")


class EmbeddingSetsPublic(BaseModel):
    data: list[EmbeddingSetPublic]
    count: int


class DatasetPublic(BaseModel):
    name: str
    embedding_set_key: str | None = Field(
        description="Null for a dataset registered ahead of its first record.")
    split: str
    record_count: int
    retention_days: int | None
    description: str | None = None
    created_at: datetime
    last_log: datetime | None


class DatasetRegister(BaseModel):
    """Register (or update) a dataset ahead of its records: the operator's Dataset."""

    model_config = ConfigDict(extra="forbid")
    split: Literal["training", "production"]
    embedding_set: EmbeddingSetFields | None = None
    retention_days: int | None = Field(
        default=None, gt=0, description="Production records older than this are expired.")
    description: str | None = Field(default=None, max_length=1000)


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


class RecordPublic(BaseModel):
    id: str
    dataset: str
    input_uri: str | None
    inference_class: str | None
    label_class: str | None
    tags: list[str]
    logged_at: datetime
    embedding: list[float] | None = None


class RecordsPage(BaseModel):
    data: list[RecordPublic]
    next_cursor: str | None = Field(description="Pass as `after` to get the next page.")


class DeleteRecords(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(min_length=1, max_length=100_000)


class DeletedRecords(BaseModel):
    deleted: list[str]
    count: int


class TagRecords(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(min_length=1, max_length=100_000)
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class TaggedRecords(BaseModel):
    updated: list[str]
    count: int


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


class RecommendationItem(BaseModel):
    id: str
    dataset: str
    input_uri: str | None
    score: float = Field(description="Priority in [0, 1], higher = more worth labelling.")
    percentile: float = Field(description="Percentile of the score among training records.")
    verdict: str = Field(description="label or ok")
    signals: dict[str, float] = Field(description="Normalised level (0-1) of each signal.")
    raw_signals: dict[str, float] = Field(description="Raw value of each signal.")
    inference_class: str | None
    tags: list[str]
    logged_at: datetime


class RecommendationPage(BaseModel):
    items: list[RecommendationItem]
    next_cursor: str | None
    total: int = Field(description="Records in the queue (not labelled).")
    mhb_version: int | None
    updated_at: datetime | None


class MarkLabelled(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str
    ids: list[str] = Field(min_length=1, max_length=100_000)


class LabelledRecords(BaseModel):
    updated: list[str]
    count: int
