"""The HTTP client: :class:`Client`."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import orjson
import pyarrow as pa
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)
from tqdm.auto import tqdm

from chroma import errors

if TYPE_CHECKING:
    from chroma.client.sessions import ProductionSession, TrainingSession

__all__ = ["Client"]

ARROW_CONTENT_TYPE = "application/vnd.apache.arrow.stream"
_ERROR_BY_STATUS: dict[int, type[errors.ChromaError]] = {
    400: errors.MalformedBody,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedType,
    422: errors.InvalidInput,
    503: errors.Unavailable,
}


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError | errors.Unavailable)


class Client:
    """A connection to a Chroma server.

    Args:
        url: base URL of the API.
        api_key: sent as ``Authorization: Bearer <key>``; default ``CHROMA_API_KEY`` from
            the environment, else none (a server on loopback without keys needs none).
            A refused key raises ``chroma.errors.Unauthorized`` (401) or ``Forbidden`` (403).
        timeout: seconds per request.
        batch_size: records per request when logging many.
        bulk_threshold: batches of at least this many records go as Arrow IPC, not JSON.
        progress: show a progress bar for uploads of more than one batch.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        batch_size: int = 20_000,
        bulk_threshold: int = 1_000,
        progress: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self.bulk_threshold = bulk_threshold
        self.progress = progress
        api_key = api_key or os.environ.get("CHROMA_API_KEY") or None
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- low level ---------------------------------------------------------------------

    @retry(
        retry=retry_if_exception(_is_transient),
        stop=stop_after_attempt(5),
        wait=wait_exponential(multiplier=0.2, max=5),
        reraise=True,
    )
    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error_from(response)
        return response.json() if response.content else None

    # -- logging -----------------------------------------------------------------------

    def log(
        self,
        embedding: Sequence[float] | np.ndarray,
        *,
        embedding_set: Mapping[str, Any],
        dataset: str,
        split: str,
        id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Log one record; returns the server's answer (ids, count, maybe assessments)."""
        record = {"embedding": np.asarray(embedding, dtype=np.float32).tolist(),
                  "id": id or uuid.uuid4().hex, **fields}
        body = {"embedding_set": dict(embedding_set), "dataset": dataset, "split": split,
                "records": [record]}
        return self._request("POST", "/api/v1/log", content=orjson.dumps(body),
                             headers={"content-type": "application/json"})

    def log_many(
        self,
        embeddings: np.ndarray | Sequence[Sequence[float]],
        *,
        embedding_set: Mapping[str, Any],
        dataset: str,
        split: str,
        ids: Sequence[str] | None = None,
        input_uris: Sequence[str | None] | None = None,
        inference_classes: Sequence[str | None] | None = None,
        label_classes: Sequence[str | None] | None = None,
        scores: Sequence[Mapping[str, float] | None] | None = None,
        tags: Sequence[Sequence[str]] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """Log many records in batches (Arrow bulk for large ones) with a progress bar."""
        matrix = np.asarray(embeddings, dtype=np.float32)
        if matrix.ndim != 2:
            raise errors.InvalidInput("embeddings must be a 2-D array (records x dimension)")
        n = len(matrix)
        ids = list(ids) if ids is not None else [uuid.uuid4().hex for _ in range(n)]
        columns: dict[str, Sequence[Any] | None] = {
            "input_uri": input_uris, "inference_class": inference_classes,
            "label_class": label_classes, "scores": scores, "tags": tags, "metadata": metadata,
        }
        for name, values in columns.items():
            if values is not None and len(values) != n:
                raise errors.InvalidInput(f"{name} has {len(values)} values for {n} embeddings")
        all_ids: list[str] = []
        answers: list[dict[str, Any]] = []
        bar = tqdm(total=n, unit="rec", desc=f"log {dataset}",
                   disable=not self.progress or n <= self.batch_size)
        try:
            for start in range(0, n, self.batch_size):
                stop = min(start + self.batch_size, n)
                chunk = {k: (v[start:stop] if v is not None else None) for k, v in columns.items()}
                send = self._send_arrow if stop - start >= self.bulk_threshold else self._send_json
                answer = send(matrix[start:stop], ids[start:stop], chunk,
                              embedding_set=embedding_set, dataset=dataset, split=split)
                all_ids.extend(answer["ids"])
                answers.append(answer)
                bar.update(stop - start)
        finally:
            bar.close()
        result: dict[str, Any] = {
            "embedding_set_key": answers[0]["embedding_set_key"] if answers else None,
            "ids": all_ids, "count": len(all_ids),
        }
        assessments = [a for answer in answers for a in answer.get("assessments") or []]
        if assessments:
            result["assessments"] = assessments
        return result

    def _send_json(
        self, matrix: np.ndarray, ids: Sequence[str], columns: Mapping[str, Any], *,
        embedding_set: Mapping[str, Any], dataset: str, split: str,
    ) -> dict[str, Any]:
        records = []
        for i, vector in enumerate(matrix.tolist()):
            record: dict[str, Any] = {"id": ids[i], "embedding": vector}
            for name, values in columns.items():
                if values is not None and values[i] is not None:
                    record[name] = values[i]
            records.append(record)
        body = {"embedding_set": dict(embedding_set), "dataset": dataset, "split": split,
                "records": records}
        return self._request("POST", "/api/v1/log", content=orjson.dumps(body),
                             headers={"content-type": "application/json"})

    def _send_arrow(
        self, matrix: np.ndarray, ids: Sequence[str], columns: Mapping[str, Any], *,
        embedding_set: Mapping[str, Any], dataset: str, split: str,
    ) -> dict[str, Any]:
        return self._request(
            "POST", "/api/v1/log", content=arrow_stream(
                matrix, ids, columns, embedding_set=embedding_set, dataset=dataset, split=split),
            headers={"content-type": ARROW_CONTENT_TYPE},
        )

    def upload_jsonl(self, path: Path | str, *, batch_size: int | None = None) -> dict[str, Any]:
        """Upload a JSONL file written by :meth:`Session.save` (or by hand, same shape)."""
        batch_size = batch_size or self.batch_size
        total = 0
        with open(path, "rb") as handle:
            lines = [line for line in handle if line.strip()]
        bar = tqdm(total=len(lines), unit="rec", desc=f"upload {Path(path).name}",
                   disable=not self.progress)
        try:
            for start in range(0, len(lines), batch_size):
                records = [orjson.loads(line) for line in lines[start:start + batch_size]]
                answer = self._request(
                    "POST", "/api/v1/log", content=orjson.dumps({"records": records}),
                    headers={"content-type": "application/json"},
                )
                total += answer["count"]
                bar.update(len(records))
        finally:
            bar.close()
        return {"count": total}

    # -- sessions ----------------------------------------------------------------------

    def training(self, embedding_set: Mapping[str, Any], dataset: str) -> TrainingSession:
        from chroma.client.sessions import TrainingSession

        return TrainingSession(self, embedding_set, dataset)

    def production(self, embedding_set: Mapping[str, Any], dataset: str) -> ProductionSession:
        from chroma.client.sessions import ProductionSession

        return ProductionSession(self, embedding_set, dataset)

    # -- reading -----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health")

    def embedding_sets(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/v1/embeddingsets")["data"]

    def datasets(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/v1/datasets")["data"]

    def dataset(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/datasets/{name}")

    def records(
        self, dataset: str, *, limit: int = 100, after: str | None = None,
        include_embeddings: bool = False,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "include_embeddings": include_embeddings}
        if after:
            params["after"] = after
        return self._request("GET", f"/api/v1/datasets/{dataset}/records", params=params)

    def iter_records(self, dataset: str, *, page_size: int = 1000,
                     include_embeddings: bool = False) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            page = self.records(dataset, limit=page_size, after=after,
                                include_embeddings=include_embeddings)
            yield from page["data"]
            after = page["next_cursor"]
            if after is None:
                return

    def delete(self, dataset: str, ids: Sequence[str]) -> list[str]:
        return self._request("POST", f"/api/v1/datasets/{dataset}/records/delete",
                             json={"ids": list(ids)})["deleted"]

    def tag(self, dataset: str, ids: Sequence[str], *, add: Sequence[str] = (),
            remove: Sequence[str] = ()) -> list[str]:
        body = {"ids": list(ids), "add": list(add), "remove": list(remove)}
        return self._request("POST", f"/api/v1/datasets/{dataset}/records/tags",
                             json=body)["updated"]

    # -- search ------------------------------------------------------------------------

    def query(
        self,
        embedding_set: Mapping[str, Any] | str,
        embeddings: np.ndarray | Sequence[float] | Sequence[Sequence[float]] | None = None,
        *,
        record_id: str | None = None,
        dataset: str | None = None,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Nearest neighbours, nearest first: one list per query vector.

        ``embedding_set``: its fields (dict) or its key. Give ``embeddings`` (a vector or
        a matrix, one query per row) or ``record_id`` + ``dataset`` (a stored record; it
        is not answered itself). ``filter``: ``dataset(s)``, ``split``,
        ``inference_class(es)``, ``label_class(es)``, ``tags`` (any of), ``logged_from``,
        ``logged_until``. Each neighbour: ``id``, ``dataset``, ``split``, ``distance``,
        ``input_uri``, ``payload``.
        """
        body: dict[str, Any] = {"k": k}
        if isinstance(embedding_set, str):
            body["embedding_set_key"] = embedding_set
        else:
            body["embedding_set"] = dict(embedding_set)
        if embeddings is not None:
            matrix = np.asarray(embeddings, dtype=np.float32)
            if matrix.ndim not in (1, 2):
                raise errors.InvalidInput("embeddings must be a vector or a 2-D array")
            body["embeddings"] = np.atleast_2d(matrix).tolist()
        if record_id is not None:
            body["record_id"] = record_id
            body["dataset"] = dataset
        if filter:
            body["filter"] = {name: value.isoformat() if hasattr(value, "isoformat") else value
                              for name, value in filter.items()}
        answer = self._request("POST", "/api/v1/query", content=orjson.dumps(body),
                               headers={"content-type": "application/json"})
        return [result["neighbours"] for result in answer["results"]]

    # -- the labelling queue -----------------------------------------------------------

    def recommendations(
        self, embedding_set: Mapping[str, Any] | str, *, limit: int = 50,
        cursor: str | None = None, skip: int = 0, datasets: Sequence[str] = (),
        inference_classes: Sequence[str] = (), tags: Sequence[str] = (),
        diverse: bool = False,
    ) -> dict[str, Any]:
        """A page of the labelling queue, best first: ``{"items": [...], "next_cursor"}``.

        ``embedding_set``: its fields (dict) or its key. Items are flat dicts, ready for
        ``pandas.DataFrame(page["items"])``.
        """
        from chroma.keys import embedding_set_key

        key = embedding_set if isinstance(embedding_set, str) else embedding_set_key(
            embedding_set)
        params: dict[str, Any] = {"embedding_set_key": key, "limit": limit, "skip": skip,
                                  "diverse": diverse}
        if cursor:
            params["cursor"] = cursor
        for name, values in (("dataset", datasets), ("inference_class", inference_classes),
                             ("tags", tags)):
            if values:
                params[name] = list(values)
        return self._request("GET", "/api/v1/recommendations", params=params)

    def mark_labelled(self, dataset: str, ids: Sequence[str]) -> list[str]:
        """Take records out of the labelling queue."""
        return self._request("POST", "/api/v1/recommendations/labelled",
                             json={"dataset": dataset, "ids": list(ids)})["updated"]


def arrow_stream(
    matrix: np.ndarray, ids: Sequence[str], columns: Mapping[str, Any], *,
    embedding_set: Mapping[str, Any], dataset: str, split: str,
) -> bytes:
    """An Arrow IPC stream body for ``POST /log`` (shared fields in schema metadata)."""
    dimension = matrix.shape[1]
    arrays = {
        "id": pa.array(list(ids), pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(matrix).reshape(-1)), dimension),
    }
    for name in ("input_uri", "inference_class", "label_class"):
        if columns.get(name) is not None:
            arrays[name] = pa.array(list(columns[name]), pa.string())
    if columns.get("tags") is not None:
        arrays["tags"] = pa.array([list(t or []) for t in columns["tags"]],
                                  pa.list_(pa.string()))
    for name in ("scores", "metadata"):
        if columns.get(name) is not None:
            arrays[name] = pa.array(
                [None if v is None else json.dumps(dict(v)) for v in columns[name]], pa.string())
    table = pa.table(arrays)
    table = table.replace_schema_metadata({
        "chroma.embedding_set": json.dumps(dict(embedding_set)),
        "chroma.dataset": dataset,
        "chroma.split": split,
    })
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _error_from(response: httpx.Response) -> errors.ChromaError:
    try:
        body = response.json()
        message = body.get("message") or str(body)
        details = body.get("details")
    except ValueError:
        message, details = response.text or response.reason_phrase, None
    cls = _ERROR_BY_STATUS.get(response.status_code, errors.ChromaError)
    error = cls(f"HTTP {response.status_code}: {message}", details=details)
    error.status_code = response.status_code
    return error
