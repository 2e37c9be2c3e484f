"""``POST /api/v1/log``: JSON (one record or a batch) or an Arrow IPC stream."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from chroma.api.deps import ServicesDep
from chroma.api.models import ErrorBody, LogResult
from chroma.api.responses import ORJSONResponse
from chroma.errors import PayloadTooLarge, UnsupportedType
from chroma.ingest import parse_arrow_log, parse_json_log
from chroma.ingest.arrow import ARROW_CONTENT_TYPE
from chroma.ingest.validation import LogBatch
from chroma.labelling import Assessor

router = APIRouter(prefix="/api/v1", tags=["log"])

_ERRORS = {
    400: {"model": ErrorBody, "description": "Empty body, malformed JSON or Arrow."},
    409: {"model": ErrorBody, "description": "The dataset belongs to another embedding set "
          "or split."},
    413: {"model": ErrorBody, "description": "Body or batch larger than the limit."},
    415: {"model": ErrorBody, "description": "Unsupported Content-Type."},
    422: {"model": ErrorBody, "description": "Invalid records (dimension, NaN, types, ...)."},
    503: {"model": ErrorBody, "description": "Store or catalog unavailable; nothing stored."},
}

_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/LogRequest"},
                        {"$ref": "#/components/schemas/RecordIn"},
                    ]
                }
            },
            ARROW_CONTENT_TYPE: {
                "schema": {"type": "string", "format": "binary"},
                "description": "Arrow IPC stream; shared fields in schema metadata "
                "(chroma.embedding_set, chroma.dataset, chroma.split) or query parameters.",
            },
        },
    }
}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) past ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_log_body(
    body: bytes, content_type: str, query: dict[str, str], max_records: int
) -> list[LogBatch]:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == ARROW_CONTENT_TYPE:
        return parse_arrow_log(body, query=query, max_records=max_records)
    if media in ("application/json", ""):
        return parse_json_log(body, max_records=max_records)
    raise UnsupportedType(
        f"Content-Type {media!r} is not supported; use application/json or {ARROW_CONTENT_TYPE}"
    )


@router.post(
    "/log",
    status_code=201,
    response_model=LogResult,
    responses={202: {"model": LogResult, "description": "Committed; production records' "
                     "assessment is not available yet."}, **_ERRORS},
    openapi_extra=_REQUEST_BODY,
)
async def log_records(request: Request, services: ServicesDep) -> ORJSONResponse:
    """Validate, commit durably (group-committed), then answer with the ids."""
    # One dependency, not three: this is the hottest route, and FastAPI's dependency
    # solving is a visible share of a single-record request.
    settings, committer = services.settings, services.committer
    body = await read_body(request, settings.max_body_bytes)
    parse_args = (
        body,
        request.headers.get("content-type", ""),
        dict(request.query_params),
        settings.max_records_per_request,
    )
    # Small JSON bodies parse faster inline than through a thread hop.
    if len(body) < 64 * 1024:
        batches = parse_log_body(*parse_args)
    else:
        batches = await run_in_threadpool(parse_log_body, *parse_args)
    result = await asyncio.wrap_future(committer.submit(batches))
    answer = LogResult(embedding_set_key=result.embedding_set_key, ids=result.ids,
                       count=result.count)
    if not result.production_ids:
        return ORJSONResponse(answer.model_dump(exclude_none=True), status_code=201)
    # Production records are committed; assess them if the recommender is ready (201),
    # else acknowledge without an assessment (202) — never an error.
    production = [b for b in batches if b.split == "production"]
    assessor = services.assessor
    if any(assessor.known_unready(b.embedding_set_key) for b in production):
        assessments = None  # known within the last seconds: skip the thread hop
    else:
        assessments = await run_in_threadpool(_assess, assessor, production)
    answer.assessments = assessments
    status = 201 if assessments is not None else 202
    return ORJSONResponse(answer.model_dump(exclude_none=True), status_code=status)


def _assess(assessor: Assessor, batches: list[LogBatch]) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = []
    for batch in batches:
        # The committed records (duplicate ids in one request: the last one counts).
        assessed = assessor.assess(batch.embedding_set_key, batch.records.keep_last_per_id())
        if assessed is None:
            return None
        found.extend(assessed)
    return found
