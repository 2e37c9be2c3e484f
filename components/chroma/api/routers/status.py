"""``GET /api/v1/status``: every component, the queue, and per embedding set how far the
index and the labelling queue lag behind its change feed."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

import chroma
from chroma.api.deps import CatalogDep, OperationsDep, SettingsDep
from chroma.api.models import ComponentPublic, IndexStatus, StatusPublic
from chroma.api.routers.operations import public
from chroma.catalog import Catalog, ComponentRow

router = APIRouter(prefix="/api/v1", tags=["status"])

HEARTBEAT_TIMEOUT_S = 10.0
"""A component whose last heartbeat is older than this is reported down."""


def component_public(row: ComponentRow, now: datetime) -> ComponentPublic:
    age = (now - row.heartbeat_at).total_seconds() if row.heartbeat_at else None
    state = row.state
    if state in ("up", "starting") and (age is None or age > HEARTBEAT_TIMEOUT_S):
        state = "down" if row.heartbeat_at else "starting"
    elif state == "starting" and age is not None and age <= HEARTBEAT_TIMEOUT_S:
        state = "up"
    uptime = (now - row.started_at).total_seconds() if row.started_at and state == "up" else None
    return ComponentPublic(
        name=row.name, kind=row.kind, state=state, pid=row.pid, host=row.host, uptime_s=uptime,
        last_heartbeat=row.heartbeat_at, heartbeat_age_s=age, restarts=row.restarts,
        operation_kinds=list(row.kinds), last_error=row.last_error,
    )


def embedding_set_status(catalog: Catalog) -> list[IndexStatus]:
    """Index freshness per set, with what the index and the queue lag behind the feed."""
    lags = {lag.key: lag for lag in catalog.changes.feed_lag()}
    out = []
    for row in catalog.index_freshness():
        lag = lags.get(row["embedding_set_key"])
        out.append(IndexStatus(
            **row, stale=row["latest_seq"] > row["indexed_seq"],
            scored_seq=lag.scored_seq if lag else 0, index_lag=lag.index_lag if lag else 0,
            queue_lag=lag.queue_lag if lag else 0))
    return out


@router.get("/status", response_model=StatusPublic)
def status(
    operations: OperationsDep, catalog: CatalogDep, settings: SettingsDep
) -> StatusPublic:
    """What runs, what is queued, and how fresh each embedding set's index is."""
    now = datetime.now(UTC)
    return StatusPublic(
        mode=settings.mode,
        version=chroma.__version__,
        components=[component_public(row, now) for row in operations.components()],
        queue_depth=operations.queue_depth(),
        embedding_sets=embedding_set_status(catalog),
        recent_operations=[public(op) for op in operations.list(limit=10)],
    )
