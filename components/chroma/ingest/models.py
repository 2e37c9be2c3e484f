"""Wire models of ``POST /api/v1/log`` (JSON): one record, or ``{"records": [...]}``.

Shared fields (``embedding_set``, ``dataset``, ``split``) may sit at the top level or on
each record. Unknown fields, non-finite numbers and wrong types are rejected.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from chroma.errors import InvalidInput, MalformedBody
from chroma.ingest.validation import (
    DEFAULT_MAX_DIMENSION,
    HARD_MAX_DIMENSION,
    JSON_NUMBER_BOUND,
    MAX_INPUT_URI,
    MAX_TAGS,
    MAX_TEXT,
    NO_NUL_PATTERN,
    LogBatch,
    batch_from_records,
)

__all__ = [
    "DATASET_NAME_PATTERN",
    "DatasetName",
    "EmbeddingSetFields",
    "LogRequest",
    "RecordIn",
    "Split",
    "parse_json_log",
]

MAX_DIMENSION = HARD_MAX_DIMENSION
DATASET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

Split = Literal["training", "production"]
DatasetName = Annotated[str, StringConstraints(pattern=DATASET_NAME_PATTERN)]
ShortText = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL_PATTERN)
]
# Numbers that jsonb gives back as numbers orjson can write (1e20 comes back an integer).
BoundedInt = Annotated[int, Field(ge=-JSON_NUMBER_BOUND, lt=JSON_NUMBER_BOUND)]
BoundedFloat = Annotated[float, Field(gt=-JSON_NUMBER_BOUND, lt=JSON_NUMBER_BOUND)]
FieldText = Annotated[str, StringConstraints(max_length=1024, pattern=NO_NUL_PATTERN)]
# Integer ids become text; 64-bit unsigned hashes are common ids, hence the upper bound.
IntegerId = Annotated[int, Field(ge=-JSON_NUMBER_BOUND, lt=2 * JSON_NUMBER_BOUND)]
EmbeddingSetFields = Annotated[
    dict[ShortText, FieldText | bool | BoundedInt | BoundedFloat],
    Field(
        min_length=1,
        max_length=32,
        description="What makes vectors comparable, e.g. model, version, layer.",
        examples=[{"model": "resnet50", "version": "3", "layer": "avgpool"}],
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RecordIn(_Strict):
    """One record to log. Only ``embedding`` is required."""

    embedding: list[float] = Field(
        min_length=1, max_length=MAX_DIMENSION, description="Finite numbers; float32 on disk."
    )
    id: ShortText | IntegerId | None = Field(
        default=None,
        description="Unique within the dataset; logging it again replaces the record. "
        "Generated when absent.",
    )
    input_uri: Annotated[
        str, StringConstraints(max_length=MAX_INPUT_URI, pattern=NO_NUL_PATTERN)
    ] | None = None
    inference_class: ShortText | None = None
    label_class: ShortText | None = None
    scores: dict[ShortText, BoundedFloat] | None = Field(
        default=None, description="Class -> probability (or logit) from the model."
    )
    tags: list[ShortText] | None = Field(default=None, max_length=MAX_TAGS)
    metadata: dict[str, Any] | None = None
    embedding_set: EmbeddingSetFields | None = None
    dataset: DatasetName | None = None
    split: Split | None = None


class LogRequest(_Strict):
    """A batch of records sharing (by default) one embedding set, dataset and split."""

    embedding_set: EmbeddingSetFields | None = None
    dataset: DatasetName | None = None
    split: Split | None = None
    records: list[RecordIn] = Field(min_length=1)


def parse_json_log(
    body: bytes, *, max_records: int, max_dimension: int = DEFAULT_MAX_DIMENSION
) -> list[LogBatch]:
    """Validate a JSON ``/log`` body into batches, one per (dataset, split)."""
    if not body.strip():
        raise MalformedBody("the request body is empty; send one record or {\"records\": [...]}")
    try:
        parsed = _validate_body(body)
    except ValidationError as exc:
        raise _to_invalid_input(exc) from None
    if isinstance(parsed, RecordIn):
        parsed = LogRequest(records=[parsed])
    if len(parsed.records) > max_records:
        from chroma.errors import PayloadTooLarge

        raise PayloadTooLarge(
            f"{len(parsed.records)} records in one request; the limit is {max_records}"
        )
    return batch_from_records(
        parsed.records,
        embedding_set=parsed.embedding_set,
        dataset=parsed.dataset,
        split=parsed.split,
        max_dimension=max_dimension,
    )


def _validate_body(body: bytes) -> LogRequest | RecordIn:
    """A body with a top-level ``records`` is a batch, one without is a single record.

    Not a discriminated union: its callable discriminator makes pydantic build Python
    objects of the whole body first (a third of a 1,000-record batch's parse). The
    substring test only spares singles the batch attempt."""
    if b'"records"' in body:
        try:
            return LogRequest.model_validate_json(body)
        except ValidationError as exc:
            if not any(e["type"] == "missing" and e["loc"] == ("records",)
                       for e in exc.errors(include_url=False)):
                raise
    return RecordIn.model_validate_json(body)


def _to_invalid_input(exc: ValidationError) -> InvalidInput:
    errors = exc.errors(include_url=False, include_input=False)
    if errors and errors[0]["type"] == "json_invalid":
        return MalformedBody(f"malformed JSON: {errors[0]['msg']}")
    details = [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"]}
        for err in errors[:20]
    ]
    summary = "; ".join(f"{'.'.join(d['loc']) or 'body'}: {d['msg']}" for d in details[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return InvalidInput(f"invalid log request: {summary}{more}", details=details)
