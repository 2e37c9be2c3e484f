"""``/api/v1/map``: the 2-D map of an embedding set, ready or being computed.

Documentation of the answers: the route renders them itself (columnar arrays of up to
hundreds of thousands of points are not worth a model validation per request)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["MapPending", "MapPoints", "MapReady"]


class MapPoints(BaseModel):
    """Columnar: the i-th entry of every array is the i-th point."""

    id: list[str]
    dataset: list[str]
    split: list[str] = Field(description="training or production")
    x: list[float] = Field(description="First coordinate (float32 precision).")
    y: list[float] = Field(description="Second coordinate (float32 precision).")
    label_class: list[str | None]
    inference_class: list[str | None]
    priority: list[float | None] = Field(
        description="The record's labelling-queue score; null for training and unscored "
                    "records.")


class MapReady(BaseModel):
    embedding_set_key: str
    status: Literal["ready"]
    method: Literal["pca", "umap"]
    version: str = Field(description="The data version the map was computed at.")
    computed_at: datetime
    count: int = Field(description="Points in this answer (at most `limit`).")
    total: int = Field(description="Points in the map (every live record).")
    stale: bool = Field(default=False, description=(
        "Only with `stale=true`: the map is of older data; `operation_id` computes the "
        "current one."))
    operation_id: int | None = Field(default=None, description="Set when `stale`.")
    points: MapPoints


class MapPending(BaseModel):
    embedding_set_key: str
    status: Literal["pending"]
    operation_id: int = Field(description="The `project` operation computing the map: poll "
                                          "GET /api/v1/operations/{id}, then ask again.")
