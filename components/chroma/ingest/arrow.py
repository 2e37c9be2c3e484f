"""The bulk body of ``POST /api/v1/log``: an Arrow IPC stream, no JSON cost.

Content type ``application/vnd.apache.arrow.stream``. Shared fields travel in the
schema metadata (``chroma.embedding_set`` as JSON, ``chroma.dataset``, ``chroma.split``)
or as query parameters of the same names without the prefix. Columns:

    embedding        list / fixed_size_list of float (required, no nulls)
    id               string or integer (null: generated)
    input_uri, inference_class, label_class   string
    tags             list<string>
    scores, metadata string holding a JSON object

The records then meet the same rules as JSON ones (``check_batch``): lengths, no NUL,
scores as class -> finite number, the dimension limit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import TypeAdapter, ValidationError

from chroma.errors import InvalidInput, MalformedBody, PayloadTooLarge
from chroma.ingest.models import DatasetName, EmbeddingSetFields, Split
from chroma.ingest.validation import (
    DEFAULT_MAX_DIMENSION,
    LogBatch,
    check_batch,
    check_embeddings,
    new_record_id,
)
from chroma.keys import embedding_set_key
from chroma.storage.records import RecordBatch

__all__ = ["ARROW_CONTENT_TYPE", "parse_arrow_log"]

ARROW_CONTENT_TYPE = "application/vnd.apache.arrow.stream"

_KNOWN_COLUMNS = {
    "embedding", "id", "input_uri", "inference_class", "label_class", "tags", "scores",
    "metadata",
}
_SET_FIELDS: TypeAdapter[dict[str, Any]] = TypeAdapter(EmbeddingSetFields)
_DATASET: TypeAdapter[str] = TypeAdapter(DatasetName)
_SPLIT: TypeAdapter[str] = TypeAdapter(Split)


def parse_arrow_log(
    body: bytes, *, query: dict[str, str], max_records: int,
    max_dimension: int = DEFAULT_MAX_DIMENSION,
) -> list[LogBatch]:
    """Validate an Arrow IPC stream into one :class:`LogBatch`."""
    if not body:
        raise MalformedBody("the request body is empty; send an Arrow IPC stream")
    try:
        table = pa.ipc.open_stream(pa.BufferReader(body)).read_all()
        table.validate(full=True)  # e.g. strings that are not UTF-8
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise MalformedBody(f"the body is not a readable Arrow IPC stream: {exc}") from None
    if table.num_rows == 0:
        raise InvalidInput("the Arrow stream holds no rows")
    if table.num_rows > max_records:
        raise PayloadTooLarge(f"{table.num_rows} records; the limit is {max_records}")
    unknown = set(table.column_names) - _KNOWN_COLUMNS
    if unknown:
        raise InvalidInput(
            f"unknown columns {sorted(unknown)}; known: {sorted(_KNOWN_COLUMNS)}"
        )
    shared = _shared_fields(table.schema.metadata or {}, query)
    records = RecordBatch(
        ids=_ids(table),
        embeddings=_embeddings(table),
        input_uris=_strings(table, "input_uri"),
        inference_classes=_strings(table, "inference_class"),
        label_classes=_strings(table, "label_class"),
        scores_json=_json_objects(table, "scores"),
        tags=_tags(table),
        metadata_json=_json_objects(table, "metadata"),
        dataset=shared["dataset"],
        split=shared["split"],
    )
    check_batch(records, max_dimension=max_dimension)
    return [
        LogBatch(
            embedding_set=shared["embedding_set"],
            embedding_set_key=embedding_set_key(shared["embedding_set"]),
            dataset=shared["dataset"],
            split=shared["split"],
            records=records,
        )
    ]


def _shared_fields(metadata: dict[bytes, bytes], query: dict[str, str]) -> dict[str, Any]:
    def pick(name: str) -> str | None:
        raw = metadata.get(f"chroma.{name}".encode())
        return raw.decode() if raw is not None else query.get(name)

    raw_set, dataset, split = pick("embedding_set"), pick("dataset"), pick("split")
    if raw_set is None or dataset is None or split is None:
        raise InvalidInput(
            "embedding_set, dataset and split are required: as schema metadata "
            "chroma.embedding_set (JSON), chroma.dataset, chroma.split, or query parameters"
        )
    try:
        fields = _SET_FIELDS.validate_json(raw_set)
        dataset = _DATASET.validate_python(dataset)
        split = _SPLIT.validate_python(split)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise InvalidInput(f"invalid shared field: {first['msg']}") from None
    return {"embedding_set": fields, "dataset": dataset, "split": split}


def _embeddings(table: pa.Table) -> np.ndarray:
    if "embedding" not in table.column_names:
        raise InvalidInput("column 'embedding' is required")
    column = table.column("embedding").combine_chunks()
    if column.null_count:
        raise InvalidInput("column 'embedding' has null values")
    if pa.types.is_fixed_size_list(column.type):
        dimension = column.type.list_size
    elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = pc.list_value_length(column).to_numpy()
        dimension = int(lengths[0])
        if (lengths != dimension).any():
            row = int(np.argmax(lengths != dimension))
            raise InvalidInput(
                f"record {row} has dimension {int(lengths[row])} but record 0 has "
                f"dimension {dimension}; all embeddings of a set have one dimension"
            )
    else:
        raise InvalidInput(f"column 'embedding' must be a list of floats, not {column.type}")
    values = column.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise InvalidInput(f"embedding values must be numbers, not {values.type}")
    if values.null_count or dimension == 0:
        raise InvalidInput("embeddings must be non-empty and hold no nulls")
    matrix = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return check_embeddings(matrix.reshape(len(column), dimension))


def _ids(table: pa.Table) -> list[str]:
    if "id" not in table.column_names:
        return [new_record_id() for _ in range(table.num_rows)]
    column = table.column("id")
    if not (pa.types.is_string(column.type) or pa.types.is_integer(column.type)
            or pa.types.is_large_string(column.type)):
        raise InvalidInput(f"column 'id' must be strings or integers, not {column.type}")
    values = column.cast(pa.string()).to_pylist()
    return [new_record_id() if v is None else v for v in values]


def _strings(table: pa.Table, name: str) -> list[str | None]:
    if name not in table.column_names:
        return [None] * table.num_rows
    column = table.column(name)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            or pa.types.is_null(column.type)):
        raise InvalidInput(f"column {name!r} must be strings, not {column.type}")
    return column.cast(pa.string()).to_pylist()


def _tags(table: pa.Table) -> list[list[str]]:
    if "tags" not in table.column_names:
        return [[] for _ in range(table.num_rows)]
    column = table.column("tags")
    if not (pa.types.is_list(column.type) and pa.types.is_string(column.type.value_type)):
        raise InvalidInput(f"column 'tags' must be list<string>, not {column.type}")
    column = column.combine_chunks()
    n = len(column)
    # Offsets and one flat list of values: to_pylist() of a list column builds a Python
    # list per row the slow way (a sixth of a bulk request's time, most rows untagged).
    offsets = column.offsets.to_numpy()
    values = column.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    if values.null_count:
        raise InvalidInput("column 'tags' holds null tags; tags are non-empty strings")
    flat = values.to_pylist()
    if not flat:
        return [[] for _ in range(n)]
    starts = (offsets - offsets[0]).tolist()
    tags = [flat[starts[i]:starts[i + 1]] for i in range(n)]
    if column.null_count:  # a null list is no tags (its offsets may still span values)
        for row in np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False)):
            tags[row] = []
    return tags


def _json_objects(table: pa.Table, name: str) -> list[str | None]:
    """The JSON text as sent; ``check_batch`` parses and checks it."""
    return _strings(table, name)
