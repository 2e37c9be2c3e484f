"""The record schema on disk and the in-memory batch that the write path commits.

One parquet file holds records of one dataset. Columns::

    id               string        record id, unique within the dataset
    embedding        fixed_size_list<float32>[dimension]
    input_uri        string        opaque to Chroma
    inference_class  string
    label_class      string
    scores           string        JSON object class -> probability/logit (null if absent)
    tags             list<string>
    metadata         string        JSON object (null if absent)
    logged_at        timestamp[us, UTC]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

__all__ = ["RecordBatch", "batch_to_table", "record_schema"]


def record_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dimension), nullable=False),
            pa.field("input_uri", pa.string()),
            pa.field("inference_class", pa.string()),
            pa.field("label_class", pa.string()),
            pa.field("scores", pa.string()),
            pa.field("tags", pa.list_(pa.string())),
            pa.field("metadata", pa.string()),
            pa.field("logged_at", pa.timestamp("us", tz="UTC"), nullable=False),
        ]
    )


@dataclass
class RecordBatch:
    """Validated records of one dataset, columnar. ``embeddings`` is float32 (n, dimension)."""

    ids: list[str]
    embeddings: np.ndarray
    input_uris: list[str | None]
    inference_classes: list[str | None]
    label_classes: list[str | None]
    scores_json: list[str | None]
    tags: list[list[str]]
    metadata_json: list[str | None]
    dataset: str = ""
    split: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dimension(self) -> int:
        return int(self.embeddings.shape[1])

    def keep_last_per_id(self) -> RecordBatch:
        """Drop earlier duplicates of an id within the batch: the last one logged wins."""
        if len(set(self.ids)) == len(self.ids):
            return self
        last: dict[str, int] = {rid: i for i, rid in enumerate(self.ids)}
        keep = sorted(last.values())
        return self.take(keep)

    def take(self, rows: list[int]) -> RecordBatch:
        return RecordBatch(
            ids=[self.ids[i] for i in rows],
            embeddings=self.embeddings[rows],
            input_uris=[self.input_uris[i] for i in rows],
            inference_classes=[self.inference_classes[i] for i in rows],
            label_classes=[self.label_classes[i] for i in rows],
            scores_json=[self.scores_json[i] for i in rows],
            tags=[self.tags[i] for i in rows],
            metadata_json=[self.metadata_json[i] for i in rows],
            dataset=self.dataset,
            split=self.split,
        )

    @staticmethod
    def concat(batches: list[RecordBatch]) -> RecordBatch:
        first = batches[0]
        if len(batches) == 1:
            return first
        return RecordBatch(
            ids=[x for b in batches for x in b.ids],
            embeddings=np.concatenate([b.embeddings for b in batches]),
            input_uris=[x for b in batches for x in b.input_uris],
            inference_classes=[x for b in batches for x in b.inference_classes],
            label_classes=[x for b in batches for x in b.label_classes],
            scores_json=[x for b in batches for x in b.scores_json],
            tags=[x for b in batches for x in b.tags],
            metadata_json=[x for b in batches for x in b.metadata_json],
            dataset=first.dataset,
            split=first.split,
        )


def batch_to_table(batch: RecordBatch, logged_at: np.datetime64) -> pa.Table:
    """The parquet table for ``batch``, every row stamped ``logged_at`` (commit time)."""
    n, dimension = batch.embeddings.shape
    flat = pa.array(np.ascontiguousarray(batch.embeddings, dtype=np.float32).reshape(-1))
    embeddings = pa.FixedSizeListArray.from_arrays(flat, dimension)
    stamps = pa.array(np.full(n, logged_at, dtype="datetime64[us]"), pa.timestamp("us", tz="UTC"))
    return pa.Table.from_arrays(
        [
            pa.array(batch.ids, pa.string()),
            embeddings,
            pa.array(batch.input_uris, pa.string()),
            pa.array(batch.inference_classes, pa.string()),
            pa.array(batch.label_classes, pa.string()),
            pa.array(batch.scores_json, pa.string()),
            pa.array(batch.tags, pa.list_(pa.string())),
            pa.array(batch.metadata_json, pa.string()),
            stamps,
        ],
        schema=record_schema(dimension),
    )
