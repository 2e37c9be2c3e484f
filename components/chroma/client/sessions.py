"""Sessions fix the embedding set, dataset and split, and buffer records.

A session sends full buffers as it goes (``flush``), or keeps them for ``save(path)``
as JSONL when ``local=True`` (e.g. on a machine without network access), to be sent
later with ``chroma upload FILE``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

if TYPE_CHECKING:
    from chroma.client.client import Client

__all__ = ["ProductionSession", "Session", "TrainingSession"]

_OPTIONAL = ("input_uri", "inference_class", "label_class", "scores", "tags", "metadata")
# log_many's per-record columns -> the record field; and -> Client.log_many's argument.
_PLURAL = {"input_uris": "input_uri", "inference_classes": "inference_class",
           "label_classes": "label_class", "scores": "scores", "tags": "tags",
           "metadatas": "metadata", "metadata": "metadata"}
_CLIENT_ARG = {name: "metadata" if field == "metadata" else name
               for name, field in _PLURAL.items()}


class Session:
    """Records of one dataset and split, buffered; use as a context manager."""

    split = ""

    def __init__(
        self, client: Client | None, embedding_set: Mapping[str, Any], dataset: str, *,
        local: bool = False, buffer_size: int | None = None,
    ) -> None:
        self.client = client
        self.embedding_set = dict(embedding_set)
        self.dataset = dataset
        self.local = local or client is None
        self.buffer_size = buffer_size or (client.batch_size if client else 20_000)
        self._embeddings: list[np.ndarray] = []
        self._rows: list[dict[str, Any]] = []
        self.sent = 0
        self.responses: list[dict[str, Any]] = []

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None and not self.local:
            self.flush()

    def log(self, embedding: Sequence[float] | np.ndarray, *, id: str | None = None,
            **fields: Any) -> str:
        """Buffer one record; returns its id (generated when not given)."""
        unknown = set(fields) - set(_OPTIONAL)
        if unknown:
            raise TypeError(f"unknown record fields {sorted(unknown)}; known: {_OPTIONAL}")
        record_id = id or uuid.uuid4().hex
        self._embeddings.append(np.asarray(embedding, dtype=np.float32))
        self._rows.append({"id": record_id, **fields})
        if not self.local and len(self._rows) >= self.buffer_size:
            self.flush()
        return record_id

    def log_many(self, embeddings: np.ndarray, **columns: Sequence[Any] | None) -> list[str]:
        """Log many records; ``columns`` are per-record lists named as in :meth:`log`, plural.

        Online, they go straight to :meth:`Client.log_many` (after what is buffered), so a
        large array is sent in batches with one progress bar; offline they are buffered.
        """
        matrix = np.asarray(embeddings, dtype=np.float32)
        ids = list(columns.pop("ids", None) or [uuid.uuid4().hex for _ in range(len(matrix))])
        unknown = set(columns) - set(_PLURAL)
        if unknown:
            raise TypeError(f"unknown record columns {sorted(unknown)}; known: {sorted(_PLURAL)}")
        if self.local or self.client is None:
            for i, vector in enumerate(matrix):
                fields = {_PLURAL[k]: v[i] for k, v in columns.items()
                          if v is not None and v[i] is not None}
                self.log(vector, id=ids[i], **fields)
            return ids
        self.flush()  # records logged before these are sent first
        per_record = {_CLIENT_ARG[k]: v for k, v in columns.items() if v is not None}
        if "tags" in per_record:
            per_record["tags"] = [t or [] for t in per_record["tags"]]
        answer = self.client.log_many(matrix, embedding_set=self.embedding_set,
                                      dataset=self.dataset, split=self.split, ids=ids,
                                      **per_record)
        self.sent += answer["count"]
        self.responses.append(answer)
        return ids

    def flush(self) -> dict[str, Any] | None:
        """Send what is buffered; returns the server's answer."""
        if not self._rows or self.client is None:
            return None
        columns = {name: [row.get(name) for row in self._rows] for name in _OPTIONAL}
        answer = self.client.log_many(
            np.stack(self._embeddings), embedding_set=self.embedding_set,
            dataset=self.dataset, split=self.split, ids=[row["id"] for row in self._rows],
            input_uris=columns["input_uri"], inference_classes=columns["inference_class"],
            label_classes=columns["label_class"], scores=columns["scores"],
            tags=[t or [] for t in columns["tags"]], metadata=columns["metadata"],
        )
        self.sent += answer["count"]
        self.responses.append(answer)
        self._rows.clear()
        self._embeddings.clear()
        return answer

    def save(self, path: Path | str) -> int:
        """Write the buffered records as JSONL (shared fields on each line); returns count."""
        with open(path, "ab") as handle:
            for vector, row in zip(self._embeddings, self._rows, strict=True):
                line = {"embedding_set": self.embedding_set, "dataset": self.dataset,
                        "split": self.split, "embedding": vector.tolist(),
                        **{k: v for k, v in row.items() if v is not None}}
                handle.write(orjson.dumps(line) + b"\n")
        count = len(self._rows)
        self._rows.clear()
        self._embeddings.clear()
        return count


class TrainingSession(Session):
    """Records of a training dataset (written once, the reference for scoring)."""

    split = "training"


class ProductionSession(Session):
    """Records of production traffic (scored against training)."""

    split = "production"
