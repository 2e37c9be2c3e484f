"""Operations: start (coalescing), list, read, cancel."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from chroma.api.deps import CatalogDep, OperationsDep, ServicesDep
from chroma.api.models import (
    BODY_ERRORS,
    ErrorBody,
    OperationCreate,
    OperationPublic,
    OperationsPublic,
)
from chroma.api.models.params import EmbeddingSetKeyQuery, LimitQuery, OperationIdPath
from chroma.api.responses import ORJSONResponse
from chroma.catalog import Operation
from chroma.operations.kinds import KIND_NAMES, validate_params

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]

router = APIRouter(prefix="/api/v1/operations", tags=["operations"])

_NOT_FOUND = {404: {"model": ErrorBody, "description": "No such operation."}}


def public(op: Operation) -> OperationPublic:
    duration = None
    if op.started_at is not None and op.finished_at is not None:
        duration = (op.finished_at - op.started_at).total_seconds()
    return OperationPublic(
        id=op.id, kind=op.kind, embedding_set_key=op.embedding_set_key, params=op.params,
        state=op.state, progress=op.progress, message=op.message, attempts=op.attempts,
        max_attempts=op.max_attempts, requested_by=op.requested_by,
        cancel_requested=op.cancel_requested, created_at=op.created_at,
        started_at=op.started_at, finished_at=op.finished_at, duration_s=duration,
        result=op.result, error=op.error,
    )


@router.post(
    "",
    status_code=201,
    response_model=OperationPublic,
    responses={
        **BODY_ERRORS,
        200: {"model": OperationPublic,
              "description": "An operation of that kind and set was already active; this is it."},
        404: {"model": ErrorBody, "description": "No such embedding set."},
        422: {"model": ErrorBody, "description": "Unknown kind or bad parameters."},
    },
)
def start_operation(
    body: OperationCreate, operations: OperationsDep, services: ServicesDep,
    catalog: CatalogDep,
) -> ORJSONResponse:
    """Queue an operation (201), or answer the active one of the same kind and set (200)."""
    validate_params(body.kind, body.params)
    key = None if body.embedding_set_key is None else catalog.resolve_key(body.embedding_set_key)
    op, created = operations.enqueue(body.kind, key, params=body.params)
    if created:
        services.launcher.submit(op)
    return ORJSONResponse(public(op).model_dump(mode="json"), status_code=201 if created else 200)


@router.get("", response_model=OperationsPublic,
            responses={404: {"model": ErrorBody, "description": "No such embedding set."}})
def list_operations(
    operations: OperationsDep,
    catalog: CatalogDep,
    state: State | None = None,
    kind: Literal[KIND_NAMES] | None = None,  # type: ignore[valid-type]  # the table of kinds
    embedding_set_key: EmbeddingSetKeyQuery = None,
    cursor: Annotated[str | None, Query(
        pattern=r"^[0-9]{1,18}$",
        description="`next_cursor` of the previous page (DESIGN §13).")] = None,
    limit: LimitQuery = 100,
) -> OperationsPublic:
    """Newest first, a page at a time, optionally filtered."""
    key = catalog.resolve_key(embedding_set_key) if embedding_set_key is not None else None
    found = operations.list(state=state, kind=kind, embedding_set_key=key, limit=limit,
                            before=int(cursor) if cursor is not None else None)
    data = [public(op) for op in found]
    next_cursor = str(found[-1].id) if len(found) == limit else None
    return OperationsPublic(data=data, count=len(data), next_cursor=next_cursor)


@router.get("/{operation_id}", response_model=OperationPublic, responses=_NOT_FOUND)
def get_operation(operation_id: OperationIdPath, operations: OperationsDep) -> OperationPublic:
    return public(operations.get(operation_id))


@router.post(
    "/{operation_id}/cancel",
    response_model=OperationPublic,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody, "description": "Already finished."}},
)
def cancel_operation(operation_id: OperationIdPath, operations: OperationsDep) -> OperationPublic:
    """Cancel: queued operations at once; running ones at their next progress report."""
    return public(operations.cancel(operation_id))
