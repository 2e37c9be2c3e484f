"""Operations: start (coalescing), list, read, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from chroma.api.deps import OperationsDep, ServicesDep
from chroma.api.models import ErrorBody, OperationCreate, OperationPublic, OperationsPublic
from chroma.api.responses import ORJSONResponse
from chroma.catalog import Operation
from chroma.operations.kinds import validate_params

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
        200: {"model": OperationPublic,
              "description": "An operation of that kind and set was already active; this is it."},
        404: {"model": ErrorBody, "description": "No such embedding set."},
        422: {"model": ErrorBody, "description": "Unknown kind or bad parameters."},
    },
)
def start_operation(
    body: OperationCreate, operations: OperationsDep, services: ServicesDep
) -> ORJSONResponse:
    """Queue an operation (201), or answer the active one of the same kind and set (200)."""
    validate_params(body.kind, body.params)
    op, created = operations.enqueue(body.kind, body.embedding_set_key, params=body.params)
    if created:
        services.launcher.submit(op)
    return ORJSONResponse(public(op).model_dump(mode="json"), status_code=201 if created else 200)


@router.get("", response_model=OperationsPublic)
def list_operations(
    operations: OperationsDep,
    state: str | None = None,
    kind: str | None = None,
    embedding_set_key: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> OperationsPublic:
    """Newest first, optionally filtered."""
    data = [public(op) for op in operations.list(
        state=state, kind=kind, embedding_set_key=embedding_set_key, limit=limit)]
    return OperationsPublic(data=data, count=len(data))


@router.get("/{operation_id}", response_model=OperationPublic, responses=_NOT_FOUND)
def get_operation(operation_id: int, operations: OperationsDep) -> OperationPublic:
    return public(operations.get(operation_id))


@router.post(
    "/{operation_id}/cancel",
    response_model=OperationPublic,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody, "description": "Already finished."}},
)
def cancel_operation(operation_id: int, operations: OperationsDep) -> OperationPublic:
    """Cancel: queued operations at once; running ones at their next progress report."""
    return public(operations.cancel(operation_id))
