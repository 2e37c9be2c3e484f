"""``/api/v1/recommendations``: the labelling queue's pages and marking records labelled."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LabelledRecords", "MarkLabelled", "RecommendationItem", "RecommendationPage"]


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
