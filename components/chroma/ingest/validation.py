"""From validated wire records to columnar batches: pure checks, no I/O.

Checks that need no catalog happen here (equal dimensions within a request, finite
float32 values, one embedding set per request, required shared fields); checks against
stored state (the set's dimension, the dataset's binding) happen in the committer.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from chroma.errors import InvalidInput
from chroma.keys import embedding_set_key
from chroma.storage.records import RecordBatch

if TYPE_CHECKING:
    from chroma.ingest.models import RecordIn

__all__ = ["LogBatch", "batch_from_records", "check_embeddings", "new_record_id"]


@dataclass
class LogBatch:
    """Records bound for one dataset of one embedding set, ready to commit."""

    embedding_set: dict[str, Any]
    embedding_set_key: str
    dataset: str
    split: str
    records: RecordBatch


def new_record_id() -> str:
    return uuid.uuid4().hex


def check_embeddings(matrix: np.ndarray, *, where: str = "") -> np.ndarray:
    """float32 (n, d) with only finite values, else :class:`InvalidInput` naming the row."""
    with np.errstate(over="ignore"):  # overflow to inf is reported below, by row
        matrix = np.asarray(matrix, dtype=np.float32)
    finite = np.isfinite(matrix)
    if not finite.all():
        row = int(np.argwhere(~finite.all(axis=1))[0][0])
        raise InvalidInput(
            f"{where}record {row} has a non-finite embedding value (NaN, inf, or beyond "
            "float32 range); embeddings must be finite numbers"
        )
    return matrix


def batch_from_records(
    records: Sequence[RecordIn],
    *,
    embedding_set: dict[str, Any] | None,
    dataset: str | None,
    split: str | None,
) -> list[LogBatch]:
    """Group records by (dataset, split), filling shared fields from the top level."""
    first_set = records[0].embedding_set or embedding_set
    if first_set is None:
        raise InvalidInput("embedding_set is required (top level or on each record)")
    key = embedding_set_key(first_set)
    dimension = len(records[0].embedding)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, record in enumerate(records):
        record_set = record.embedding_set or embedding_set
        if record_set is None:
            raise InvalidInput(f"record {i}: embedding_set is required")
        if record_set != first_set and embedding_set_key(record_set) != key:
            raise InvalidInput(
                f"record {i} names another embedding set than record 0; "
                "one request logs to one embedding set"
            )
        if len(record.embedding) != dimension:
            raise InvalidInput(
                f"record {i} has dimension {len(record.embedding)} but record 0 has "
                f"dimension {dimension}; all embeddings of a set have one dimension"
            )
        record_dataset = record.dataset or dataset
        record_split = record.split or split
        if record_dataset is None:
            raise InvalidInput(f"record {i}: dataset is required (top level or on the record)")
        if record_split is None:
            raise InvalidInput(
                f"record {i}: split is required: 'training' or 'production'"
            )
        groups.setdefault((record_dataset, record_split), []).append(i)

    batches = []
    for (group_dataset, group_split), rows in groups.items():
        chosen = [records[i] for i in rows]
        matrix = check_embeddings(np.array([r.embedding for r in chosen], dtype=np.float64))
        batch = RecordBatch(
            ids=[new_record_id() if r.id is None else str(r.id) for r in chosen],
            embeddings=matrix,
            input_uris=[r.input_uri for r in chosen],
            inference_classes=[r.inference_class for r in chosen],
            label_classes=[r.label_class for r in chosen],
            scores_json=[_json_or_none(r.scores) for r in chosen],
            tags=[list(r.tags) if r.tags else [] for r in chosen],
            metadata_json=[_json_or_none(r.metadata) for r in chosen],
            dataset=group_dataset,
            split=group_split,
        )
        batches.append(
            LogBatch(
                embedding_set=dict(first_set),
                embedding_set_key=key,
                dataset=group_dataset,
                split=group_split,
                records=batch,
            )
        )
    return batches


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
