"""``POST /api/v1/query``: the k-nearest-neighbour search request and answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chroma.index.base import MAX_K

__all__ = ["Neighbour", "QueryFilter", "QueryRequest", "QueryResponse", "QueryResult"]

MAX_QUERIES = 1_000
"""Largest number of query vectors in one request."""


class QueryFilter(BaseModel):
    """Which records may be answered. Fields combine with AND; list values with OR."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(default=None, description="Only this dataset.")
    datasets: list[str] | None = Field(default=None, description="Only these datasets.")
    split: Literal["training", "production"] | None = Field(
        default=None, description="Only training or only production records.")
    inference_class: str | None = None
    inference_classes: list[str] | None = Field(
        default=None, description="Records whose inference_class is one of these.")
    label_class: str | None = None
    label_classes: list[str] | None = Field(
        default=None, description="Records whose label_class is one of these.")
    tags: list[str] | None = Field(
        default=None, description="Records carrying at least one of these tags.")
    logged_from: datetime | None = Field(
        default=None, description="Logged at or after this instant (inclusive).")
    logged_until: datetime | None = Field(
        default=None, description="Logged before this instant (exclusive).")


class QueryRequest(BaseModel):
    """Search by exactly one of ``embedding``, ``embeddings`` or ``record_id`` (+ ``dataset``).

    The embedding set is ``embedding_set_key``, or ``embedding_set`` (its fields), or,
    for a query by record, the record's dataset's set.
    """

    model_config = ConfigDict(extra="forbid")

    embedding_set_key: str | None = Field(default=None, description="The set to search.")
    embedding_set: dict[str, Any] | None = Field(
        default=None, description="The set's fields, instead of its key.")
    embedding: list[float] | None = Field(default=None, description="One query vector.")
    embeddings: list[list[float]] | None = Field(
        default=None, description=f"Several query vectors (at most {MAX_QUERIES}).")
    record_id: str | None = Field(
        default=None, description="Query by a stored record (never answered itself).")
    dataset: str | None = Field(default=None, description="The dataset of ``record_id``.")
    k: int = Field(default=10, ge=1, le=MAX_K, description="Neighbours per query.")
    filter: QueryFilter | None = None

    @model_validator(mode="after")
    def _one_query(self) -> QueryRequest:
        given = [name for name in ("embedding", "embeddings", "record_id")
                 if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of embedding, embeddings or record_id"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.record_id is not None and self.dataset is None:
            raise ValueError("a query by record_id needs its dataset")
        if self.embeddings is not None and not 1 <= len(self.embeddings) <= MAX_QUERIES:
            raise ValueError(f"embeddings must hold 1..{MAX_QUERIES} vectors")
        if self.embedding_set_key is not None and self.embedding_set is not None:
            raise ValueError("give embedding_set_key or embedding_set, not both")
        return self


class Neighbour(BaseModel):
    """One hit; ``distance`` is smaller for nearer (cosine: 1 - cos, dot: -<q,x>,
    euclid: ||q - x||)."""

    id: str
    dataset: str
    split: str
    distance: float
    input_uri: str | None
    payload: dict[str, Any] = Field(
        description="inference_class, label_class, tags and logged_at, as of now.")


class QueryResult(BaseModel):
    """The neighbours of one query vector, nearest first."""

    neighbours: list[Neighbour]


class QueryResponse(BaseModel):
    embedding_set_key: str
    distance: str = Field(description="The set's metric: cosine, dot or euclid.")
    results: list[QueryResult] = Field(description="One per query vector, in request order.")
