"""``/api/v1/embeddingsets``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["EmbeddingSetPublic", "EmbeddingSetsPublic"]


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
    count: int = Field(description="Embedding sets on this page.")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last.")
