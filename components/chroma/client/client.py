"""The HTTP client: :class:`Client`.

Every failure reaches the caller as a :mod:`chroma.errors` class, never an httpx one: an
answer of 4xx/5xx as the class of its status (``NotFound``, ``InvalidInput``, ...), a
server that cannot be reached or does not answer in time as ``Unreachable`` (an
``Unavailable``), after the retries.
"""

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
    Retrying,
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
    return isinstance(exc, errors.Unavailable)


class Client:
    """A connection to a Chroma server.

    Args:
        url: base URL of the API.
        api_key: sent as ``Authorization: Bearer <key>``; default ``CHROMA_API_KEY`` from
            the environment, else none (a server on loopback without keys needs none).
            A refused key raises ``chroma.errors.Unauthorized`` (401) or ``Forbidden`` (403).
        timeout: seconds per request (to wait for an answer).
        connect_timeout: seconds to wait for a connection to open: a host that drops
            packets fails after this, not after ``timeout`` per attempt.
        retries: attempts per request on ``Unavailable`` (server down, timed out, 503),
            with exponential backoff; then ``chroma.errors.Unreachable`` or the 503 is
            raised.
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
        connect_timeout: float = 10.0,
        retries: int = 5,
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
        self.retries = retries
        self._http = httpx.Client(base_url=self.url, headers=headers,
                                  timeout=httpx.Timeout(timeout, connect=connect_timeout))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- low level ---------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON (see :meth:`_call`)."""
        response = self._call(method, path, **kwargs)
        return response.json() if response.content else None

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A 2xx answer; retries what may pass (``Unavailable``) with backoff, raises the
        rest as the ``chroma.errors`` class of its status."""
        for attempt in Retrying(retry=retry_if_exception(_is_transient),
                                stop=stop_after_attempt(max(1, self.retries)),
                                wait=wait_exponential(multiplier=0.2, max=5), reraise=True):
            with attempt:
                response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise errors.Unreachable(
                f"no answer from the Chroma server at {self.url} in time "
                f"({type(exc).__name__}); is it overloaded?") from exc
        except httpx.TransportError as exc:
            raise errors.Unreachable(
                f"cannot reach the Chroma server at {self.url} ({type(exc).__name__}: "
                f"{exc}); is it running?") from exc
        if response.status_code == 503:  # retried, then raised as the answer says
            raise _error_from(response)
        return response

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
        """Upload a JSONL file written by :meth:`Session.save` (or by hand, same shape).

        The whole file is read first: a malformed line raises ``InvalidInput`` naming
        ``file:line`` before anything is sent. A batch the server refuses raises its
        error, naming the file line of the refused record when the server names one.
        """
        batch_size = batch_size or self.batch_size
        records, line_numbers = read_jsonl(path)
        total = 0
        bar = tqdm(total=len(records), unit="rec", desc=f"upload {Path(path).name}",
                   disable=not self.progress)
        try:
            for start in range(0, len(records), batch_size):
                batch = records[start:start + batch_size]
                try:
                    answer = self._request(
                        "POST", "/api/v1/log", content=orjson.dumps({"records": batch}),
                        headers={"content-type": "application/json"},
                    )
                except (errors.InvalidInput, errors.Conflict) as exc:  # this batch's fault
                    raise _at_line(exc, path, line_numbers[start:start + batch_size]) from exc
                total += answer["count"]
                bar.update(len(batch))
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

    def _pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a list route, following ``next_cursor`` (DESIGN §13)."""
        cursor: str | None = None
        while True:
            page = self._request("GET", path, params={
                **params, **({"cursor": cursor} if cursor else {})})
            yield from page["data"]
            cursor = page.get("next_cursor")
            if cursor is None:
                return

    def embedding_sets(self) -> list[dict[str, Any]]:
        """Every embedding set (all pages), in key order."""
        return list(self._pages("/api/v1/embeddingsets", limit=1000))

    def embedding_set(self, key: str) -> dict[str, Any]:
        """One embedding set by its key or a unique prefix of it (at least 4 characters);
        the answer carries the full key."""
        return self._request("GET", f"/api/v1/embeddingsets/{key}")

    def datasets(self, embedding_set_key: str | None = None) -> list[dict[str, Any]]:
        """Every dataset (all pages), in name order; of one embedding set if given."""
        params: dict[str, Any] = {"limit": 1000}
        if embedding_set_key:
            params["embedding_set_key"] = embedding_set_key
        return list(self._pages("/api/v1/datasets", **params))

    def dataset(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/datasets/{name}")

    def records(
        self, dataset: str, *, limit: int = 100, cursor: str | None = None,
        include_embeddings: bool = False, after: str | None = None,
    ) -> dict[str, Any]:
        """A page of records in id order: ``{"data": [...], "next_cursor"}``; pass
        ``next_cursor`` back as ``cursor`` (``after`` is its deprecated name)."""
        params: dict[str, Any] = {"limit": limit, "include_embeddings": include_embeddings}
        if cursor or after:
            params["cursor"] = cursor or after
        return self._request("GET", f"/api/v1/datasets/{dataset}/records", params=params)

    def iter_records(self, dataset: str, *, page_size: int = 1000,
                     include_embeddings: bool = False) -> Iterator[dict[str, Any]]:
        return self._pages(f"/api/v1/datasets/{dataset}/records", limit=page_size,
                           include_embeddings=include_embeddings)

    # -- service control ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Components, queue depth, index freshness per set, recent operations."""
        return self._request("GET", "/api/v1/status")

    def operations(
        self, *, state: str | None = None, kind: str | None = None,
        embedding_set_key: str | None = None, limit: int = 100, cursor: str | None = None,
    ) -> dict[str, Any]:
        """A page of operations, newest first: ``{"data": [...], "next_cursor"}``."""
        params = {name: value for name, value in {
            "state": state, "kind": kind, "embedding_set_key": embedding_set_key,
            "limit": limit, "cursor": cursor}.items() if value is not None}
        return self._request("GET", "/api/v1/operations", params=params)

    def operation(self, operation_id: int) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/operations/{operation_id}")

    def start_operation(
        self, kind: str, embedding_set_key: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Queue an operation: ``(operation, created)``; ``created`` is false when an
        active one of the same kind and set was answered instead."""
        body = {"kind": kind, "embedding_set_key": embedding_set_key,
                "params": dict(params or {})}
        response = self._call("POST", "/api/v1/operations", json=body)
        return response.json(), response.status_code == 201

    def cancel_operation(self, operation_id: int) -> dict[str, Any]:
        return self._request("POST", f"/api/v1/operations/{operation_id}/cancel")

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


def read_jsonl(path: Path | str) -> tuple[list[dict[str, Any]], list[int]]:
    """The records of a JSONL file and the line number of each (blank lines skipped);
    ``InvalidInput`` naming ``file:line`` for a line that is not a JSON object."""
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise errors.InvalidInput(f"{path}:{number}: not valid JSON ({exc})") from None
            if not isinstance(record, dict):
                raise errors.InvalidInput(
                    f"{path}:{number}: expected a JSON object (one record), "
                    f"got {type(record).__name__}")
            records.append(record)
            numbers.append(number)
    return records, numbers


def _at_line(exc: errors.ChromaError, path: Path | str, numbers: Sequence[int]
             ) -> errors.ChromaError:
    """The server's refusal of a batch, naming the file line of the first refused record
    when its details locate one (``loc`` ``["records", i, ...]``)."""
    for detail in exc.details if isinstance(exc.details, list) else []:
        loc = detail.get("loc", []) if isinstance(detail, dict) else []
        index = next((int(p) for p in loc[1:2] if str(p).isdigit()), None)
        if loc[:1] == ["records"] and index is not None and index < len(numbers):
            where = f"{path}:{numbers[index]}"
            break
    else:
        where = f"{path}:{numbers[0]}-{numbers[-1]}" if numbers else str(path)
    error = type(exc)(f"{where}: {exc.message}", details=exc.details)
    error.status_code = exc.status_code
    return error


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
