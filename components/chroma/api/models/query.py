"""``POST /api/v1/query``: the k-nearest-neighbour search request and answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from chroma.api.models.params import (
    DatasetNameText,
    EmbeddingSetKeyText,
    RecordIdText,
    ShortText,
    TagText,
)
from chroma.index.base import MAX_HNSW_EF, MAX_K
from chroma.ingest.models import EmbeddingSetFields
from chroma.ingest.validation import HARD_MAX_DIMENSION

__all__ = ["Neighbour", "QueryFilter", "QueryRequest", "QueryResponse", "QueryResult"]

MAX_QUERIES = 1_000
"""Largest number of query vectors in one request."""
MAX_QUERY_RESULTS = 100_000
"""Largest number of query vectors x ``k`` in one request: 1,000 vectors x k=1000 took
longer than any client waits (and the index host's), so it is refused up front."""
MAX_FILTER_VALUES = 1_000

Vector = Annotated[list[float], Field(min_length=1, max_length=HARD_MAX_DIMENSION)]


def _has_timestamp(value: datetime) -> datetime:
    value.timestamp()  # ValueError (a 422) for instants outside datetime's range, e.g. year 0
    return value


Instant = Annotated[datetime, AfterValidator(_has_timestamp)]


class QueryFilter(BaseModel):
    """Which records may be answered. Fields combine with AND; list values with OR."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetNameText | None = Field(default=None, description="Only this dataset.")
    datasets: list[DatasetNameText] | None = Field(
        default=None, max_length=MAX_FILTER_VALUES, description="Only these datasets.")
    split: Literal["training", "production"] | None = Field(
        default=None, description="Only training or only production records.")
    inference_class: ShortText | None = None
    inference_classes: list[ShortText] | None = Field(
        default=None, max_length=MAX_FILTER_VALUES,
        description="Records whose inference_class is one of these.")
    label_class: ShortText | None = None
    label_classes: list[ShortText] | None = Field(
        default=None, max_length=MAX_FILTER_VALUES,
        description="Records whose label_class is one of these.")
    tags: list[TagText] | None = Field(
        default=None, max_length=MAX_FILTER_VALUES,
        description="Records carrying at least one of these tags.")
    logged_from: Instant | None = Field(
        default=None, description="Logged at or after this instant (inclusive).")
    logged_until: Instant | None = Field(
        default=None, description="Logged before this instant (exclusive).")


class QueryRequest(BaseModel):
    """Search by exactly one of ``embedding``, ``embeddings`` or ``record_id`` (+ ``dataset``).

    The embedding set is ``embedding_set_key``, or ``embedding_set`` (its fields), or,
    for a query by record, the record's dataset's set.
    """

    model_config = ConfigDict(extra="forbid")

    embedding_set_key: EmbeddingSetKeyText | None = Field(
        default=None, description="The set to search: its key or a unique prefix of it "
        "(at least 4 characters).")
    embedding_set: EmbeddingSetFields | None = Field(
        default=None, description="The set's fields, instead of its key.")
    embedding: Vector | None = Field(default=None, description="One query vector.")
    embeddings: list[Vector] | None = Field(
        default=None, description=f"Several query vectors (at most {MAX_QUERIES}; "
        f"vectors x k at most {MAX_QUERY_RESULTS}).")
    record_id: RecordIdText | None = Field(
        default=None, description="Query by a stored record (never answered itself).")
    dataset: DatasetNameText | None = Field(
        default=None, description="The dataset of ``record_id``.")
    k: int = Field(default=10, ge=1, le=MAX_K, description="Neighbours per query.")
    hnsw_ef: int | None = Field(
        default=None, ge=1, le=MAX_HNSW_EF,
        description="HNSW candidate list of this search (at least ``k`` is used). Default: "
        "the index's (128, recall@10 >= 0.99 at 100k x 128). Lower is faster at a lower "
        "recall, e.g. for large batches: about 0.985 at 64 and 0.93 at 32 on clustered "
        "100k x 128 (bench/query.py --ef-sweep). Ignored where a set is scanned exactly "
        "(small sets).")
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
        if self.embeddings is not None and len(self.embeddings) * self.k > MAX_QUERY_RESULTS:
            raise ValueError(
                f"{len(self.embeddings)} vectors x k={self.k} asks for "
                f"{len(self.embeddings) * self.k} neighbours; at most {MAX_QUERY_RESULTS} per "
                "request: send fewer vectors per request or a smaller k")
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
