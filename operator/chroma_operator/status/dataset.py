"""Dataset status: what the cluster's API said about the dataset.

Owns: the phase (Pending, Registered, Ready, Unavailable), the counts and freshness
copied from ``GET /api/v1/datasets/{name}``, and the Registered / Synced conditions.
Pure; called by ``chroma_operator.reconcile.dataset``.
"""

from __future__ import annotations

from chroma_operator.status.common import Body, condition, merge_conditions
from chroma_operator.status_types import (
    DatasetCondition,
    DatasetPhase,
    DatasetReason,
    DatasetStatus,
)

__all__ = ["dataset_status"]

_DATASET_FIELDS = (
    ("record_count", "recordCount"),
    ("last_log", "lastLog"),
    ("embedding_set_key", "embeddingSetKey"),
    ("indexed_at", "indexedAt"),
    ("index_stale", "indexStale"),
)
"""(field of ``GET /api/v1/datasets/{name}``, field of the Dataset's status)."""


def _dataset_phase(
    registered: bool, info: Body | None, error: str | None
) -> tuple[DatasetPhase, DatasetReason, str]:
    if error:
        return DatasetPhase.UNAVAILABLE, DatasetReason.API_UNAVAILABLE, error
    if info is not None:
        return DatasetPhase.READY, DatasetReason.IN_CATALOG, "dataset found in the catalog"
    if registered:
        return (
            DatasetPhase.REGISTERED,
            DatasetReason.REGISTERED,
            "registered; no record logged yet",
        )
    return DatasetPhase.PENDING, DatasetReason.NOT_IN_CATALOG, "not in the catalog yet"


def dataset_status(
    dataset: Body, registered: bool, info: Body | None, error: str | None, now: str
) -> DatasetStatus:
    """The ``status`` of a Dataset from what the cluster's API said about it."""
    previous = dataset.get("status") or {}
    phase, reason, message = _dataset_phase(registered, info, error)
    out: DatasetStatus = {
        "observedGeneration": dataset["metadata"].get("generation"),
        "phase": phase,
        "phaseReason": reason,
        "message": message,
        "conditions": merge_conditions(
            previous.get("conditions"),
            [
                condition(
                    DatasetCondition.REGISTERED, registered or info is not None, reason, message
                ),
                condition(DatasetCondition.SYNCED, error is None, reason, message),
            ],
            now,
        ),
    }
    if not error and info is not None:
        for src, dst in _DATASET_FIELDS:
            if info.get(src) is not None:
                out[dst] = info[src]  # type: ignore[literal-required]
        out["lastSyncTime"] = now
    return out
