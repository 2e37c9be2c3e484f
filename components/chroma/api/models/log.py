"""``POST /api/v1/log``: the request models (from ``chroma.ingest``) and the answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from chroma.ingest.models import LogRequest, RecordIn

__all__ = ["LogRequest", "LogResult", "RecordIn"]


class LogResult(BaseModel):
    """Answer to ``POST /log``: 201 when committed (202: committed, assessment pending)."""

    embedding_set_key: str
    ids: list[str]
    count: int
    assessments: list[dict[str, Any]] | None = Field(
        default=None, description="Per production record, when the recommender is ready."
    )
