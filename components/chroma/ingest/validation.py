"""From validated wire records to columnar batches: pure checks, no I/O.

Checks that need no catalog happen here (equal dimensions within a request, finite
float32 values, one embedding set per request, required shared fields); checks against
stored state (the set's dimension, the dataset's binding) happen in the committer.

:func:`check_batch` is the one set of rules a record meets whichever body it came in
(JSON or Arrow): everything PostgreSQL or the labelling runs would refuse later (a NUL
character in text, over-long text, scores that are not class -> finite number, a
dimension above the limit) is refused here, before the record joins a group commit.
:func:`check_json_document` bounds free-form JSON that is stored as ``jsonb`` or
re-serialised by orjson (record metadata, operation params).
"""

from __future__ import annotations

import math
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

__all__ = [
    "DEFAULT_MAX_DIMENSION",
    "HARD_MAX_DIMENSION",
    "JSON_NUMBER_BOUND",
    "MAX_INPUT_URI",
    "MAX_TAGS",
    "MAX_TEXT",
    "NO_NUL_PATTERN",
    "LogBatch",
    "batch_from_records",
    "check_batch",
    "check_embeddings",
    "check_json_document",
    "new_record_id",
]

MAX_TEXT = 256
"""Longest id, class, tag or score class name (characters)."""
MAX_INPUT_URI = 4096
"""Longest ``input_uri`` (characters)."""
MAX_TAGS = 64
"""Most tags on one record."""
HARD_MAX_DIMENSION = 65_536
"""No setting can raise the dimension limit above this (the JSON schema's bound)."""
DEFAULT_MAX_DIMENSION = 4096
"""Default of ``Settings.max_dimension``: MHB keeps a d x d covariance per class."""
NO_NUL_PATTERN = r"^[^\x00]*$"
"""Text PostgreSQL can store: it refuses the NUL character in ``text`` and ``jsonb``."""
JSON_NUMBER_BOUND = 2**63
"""Numbers in stored JSON stay below this magnitude: ``jsonb`` turns an integral float
such as 1e20 into an integer, which must still fit the 64 bits orjson writes."""
JSON_MAX_DEPTH = 32


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


def check_batch(records: RecordBatch, *, max_dimension: int = DEFAULT_MAX_DIMENSION) -> None:
    """:class:`InvalidInput` naming the first record that breaks a rule of the data model.

    The JSON models say the same in the contract; this is the check both bodies share."""
    if records.dimension > max_dimension:
        raise InvalidInput(
            f"embeddings have dimension {records.dimension}; the limit is {max_dimension} "
            "(CHROMA_MAX_DIMENSION)"
        )
    _check_texts("id", records.ids, shortest=1, longest=MAX_TEXT)
    _check_texts("input_uri", records.input_uris, shortest=0, longest=MAX_INPUT_URI)
    _check_texts("inference_class", records.inference_classes, shortest=1, longest=MAX_TEXT)
    _check_texts("label_class", records.label_classes, shortest=1, longest=MAX_TEXT)
    _check_tags(records.tags)
    for row, raw in enumerate(records.scores_json):
        if raw is not None:
            _check_scores(row, raw)
    for row, raw in enumerate(records.metadata_json):
        if raw is not None:
            check_json_document(_json_object(row, "metadata", raw), f"record {row}: metadata")


def check_json_document(value: Any, where: str, depth: int = 0) -> None:
    """:class:`InvalidInput` unless ``value`` survives ``jsonb`` and orjson unchanged.

    No NUL in keys or strings, numbers of magnitude below 2**63, at most 32 levels deep."""
    if depth > JSON_MAX_DEPTH:
        raise InvalidInput(f"{where}: nested deeper than {JSON_MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"{where}: text holds a NUL character (\\u0000)")
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        if not (math.isfinite(value) and -JSON_NUMBER_BOUND <= value < JSON_NUMBER_BOUND):
            raise InvalidInput(f"{where}: the number {value:.6g} is out of range; "
                               "numbers must be finite and of magnitude below 2**63")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_json_document(key, where, depth + 1)
            check_json_document(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_json_document(item, f"{where}[{i}]", depth + 1)


def _check_texts(
    name: str, values: Sequence[str | None], *, shortest: int, longest: int
) -> None:
    texts = [v for v in values if v is not None]
    if not texts:
        return
    lengths = list(map(len, texts))
    # One pass in C over the whole column; the row is looked for only when something is wrong.
    if min(lengths) >= shortest and max(lengths) <= longest and "\x00" not in "".join(texts):
        return
    for row, value in enumerate(values):
        if value is None:
            continue
        if "\x00" in value:
            raise InvalidInput(f"record {row}: {name} holds a NUL character (\\u0000), "
                               "which the catalog cannot store")
        if not shortest <= len(value) <= longest:
            raise InvalidInput(f"record {row}: {name} is {len(value)} characters long; "
                               f"it must be {shortest} to {longest}")


def _check_tags(tags: Sequence[Sequence[str]]) -> None:
    if not any(tags):
        return
    counts = list(map(len, tags))
    if max(counts) > MAX_TAGS:
        row = next(i for i, n in enumerate(counts) if n > MAX_TAGS)
        raise InvalidInput(f"record {row} has {counts[row]} tags; at most {MAX_TAGS}")
    flat = [tag for record_tags in tags for tag in record_tags]
    lengths = list(map(len, flat))
    if min(lengths) >= 1 and max(lengths) <= MAX_TEXT and "\x00" not in "".join(flat):
        return
    for row, record_tags in enumerate(tags):
        _check_texts(f"record {row}: tag", record_tags, shortest=1, longest=MAX_TEXT)


def _json_object(row: int, name: str, raw: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput(f"record {row}: {name} is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidInput(f"record {row}: {name} must be a JSON object")
    return parsed


def _check_scores(row: int, raw: str) -> None:
    """Scores are what the labelling runs read: class name -> finite number."""
    scores = _json_object(row, "scores", raw)
    for name, value in scores.items():
        if "\x00" in name or not 1 <= len(name) <= MAX_TEXT:
            raise InvalidInput(f"record {row}: a scores class name must be 1 to {MAX_TEXT} "
                               "characters without NUL")
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or abs(value) >= JSON_NUMBER_BOUND:
            raise InvalidInput(f"record {row}: scores[{name!r}] is {value!r}; scores map "
                               "each class to a finite number (probability or logit)")


def batch_from_records(
    records: Sequence[RecordIn],
    *,
    embedding_set: dict[str, Any] | None,
    dataset: str | None,
    split: str | None,
    max_dimension: int = DEFAULT_MAX_DIMENSION,
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
            scores_json=[_json_or_none(r.scores, "scores") for r in chosen],
            tags=[list(r.tags) if r.tags else [] for r in chosen],
            metadata_json=[_json_or_none(r.metadata, "metadata") for r in chosen],
            dataset=group_dataset,
            split=group_split,
        )
        check_batch(batch, max_dimension=max_dimension)
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


def _json_or_none(value: dict[str, Any] | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        raise InvalidInput(f"{name} cannot be stored as JSON: {exc}") from None
