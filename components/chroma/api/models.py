"""Response and request models of the REST API: the contract that shapes the OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chroma.ingest.models import LogRequest, RecordIn

__all__ = [
    "DatasetPublic",
    "DatasetsPublic",
    "DeleteRecords",
    "DeletedRecords",
    "EmbeddingSetPublic",
    "EmbeddingSetsPublic",
    "ErrorBody",
    "Health",
    "LogRequest",
    "LogResult",
    "Readiness",
    "RecordIn",
    "RecordPublic",
    "RecordsPage",
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
    dimension: int
    distance: str
    first_log: datetime | None
    last_log: datetime | None
    counts: dict[str, int] = Field(description="Records per split (training, production).")


class EmbeddingSetsPublic(BaseModel):
    data: list[EmbeddingSetPublic]
    count: int


class DatasetPublic(BaseModel):
    name: str
    embedding_set_key: str
    split: str
    record_count: int
    retention_days: int | None
    created_at: datetime
    last_log: datetime | None


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
