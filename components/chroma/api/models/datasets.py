"""``/api/v1/datasets``: datasets, their record pages, deletion and tags."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chroma.api.models.params import RecordIdText, TagText
from chroma.ingest.models import EmbeddingSetFields
from chroma.ingest.validation import MAX_TAGS, NO_NUL_PATTERN

__all__ = [
    "DatasetPublic",
    "DatasetRegister",
    "DatasetsPublic",
    "DeleteRecords",
    "DeletedRecords",
    "RecordAssessment",
    "RecordDetail",
    "RecordPublic",
    "RecordsPage",
    "TagRecords",
    "TaggedRecords",
]


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
        default=None, gt=0, le=36_500,
        description="Production records older than this are expired.")
    description: str | None = Field(default=None, max_length=1000, pattern=NO_NUL_PATTERN)


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


class RecordAssessment(BaseModel):
    """The record's entry in the labelling queue: the same numbers as its queue item."""

    score: float = Field(description="Priority in [0, 1], higher = more worth labelling.")
    percentile: float = Field(description="Percentile of the score among training records.")
    verdict: str = Field(description="label or ok")
    signals: dict[str, float] = Field(description="Normalised level (0-1) of each signal.")
    raw_signals: dict[str, float] = Field(description="Raw value of each signal.")


class RecordDetail(BaseModel):
    """One record with everything stored about it (but its embedding)."""

    id: str
    dataset: str
    split: str
    embedding_set_key: str | None
    input_uri: str | None
    inference_class: str | None
    label_class: str | None
    scores: dict[str, float] | None = Field(description="Class -> score, as logged.")
    tags: list[str]
    metadata: dict[str, Any] | None = Field(description="As logged.")
    logged_at: datetime
    assessment: RecordAssessment | None = Field(
        description="Null unless the record is a scored production record.")


class RecordsPage(BaseModel):
    data: list[RecordPublic]
    next_cursor: str | None = Field(description="Pass as `after` to get the next page.")


class DeleteRecords(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[RecordIdText] = Field(min_length=1, max_length=100_000)


class DeletedRecords(BaseModel):
    deleted: list[str]
    count: int


class TagRecords(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[RecordIdText] = Field(min_length=1, max_length=100_000)
    add: list[TagText] = Field(default_factory=list, max_length=MAX_TAGS,
                                    description="Tags to add (1 to 256 characters each).")
    remove: list[TagText] = Field(default_factory=list, max_length=MAX_TAGS)


class TaggedRecords(BaseModel):
    updated: list[str]
    count: int
