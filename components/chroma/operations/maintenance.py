"""Maintenance operations: ``compact``, ``expire`` and the ``sleep`` diagnostic.

Each handler takes an :class:`OperationContext`, reports progress through it (which is
also where cancellation and shutdown interrupt it) and returns a JSON-able result. The
table of kinds (``chroma.operations.kinds``) names them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from chroma.index.hosting import invalidate
from chroma.ingest.compaction import compact_dataset, sweep
from chroma.operations.context import OperationContext
from chroma.operations.params import CompactParams, SleepParams

__all__ = ["run_compact", "run_expire", "run_sleep"]


def run_sleep(ctx: OperationContext) -> dict[str, Any]:
    """Diagnostic: sleep ``seconds`` (default 5) in steps, reporting progress.

    For checking that workers claim, report, cancel and resume operations."""
    seconds = SleepParams.model_validate(ctx.operation.params).seconds
    steps = max(1, int(seconds * 10))
    for step in range(steps):
        time.sleep(seconds / steps)
        ctx.progress((step + 1) / steps, f"slept {(step + 1) * seconds / steps:.1f}s")
    return {"slept_s": seconds, "attempt": ctx.operation.attempts}


def run_compact(ctx: OperationContext) -> dict[str, Any]:
    """Merge small files of every dataset of the embedding set, then sweep strays.

    Files found missing from the store are repaired (their records deleted from the
    catalog, see ``chroma.ingest.compaction``) and reported under ``lost``: path -> the
    number of records lost with it; the operation still succeeds."""
    datasets = ctx.catalog.list_datasets(ctx.operation.embedding_set_key)
    params = CompactParams.model_validate(ctx.operation.params)
    merged = moved = 0
    lost: dict[str, int] = {}
    for i, dataset in enumerate(datasets):
        result = compact_dataset(ctx.catalog, ctx.store, dataset.name,
                                 small_file_rows=params.small_file_rows)
        merged += result.files_merged
        moved += result.records_moved
        lost.update({f.path: len(f.record_ids) for f in result.lost})
        if result.records_lost and dataset.embedding_set_key is not None:
            invalidate(ctx.settings, dataset.embedding_set_key)  # searches check the catalog
        ctx.progress((i + 1) / (len(datasets) + 1), f"compacted {dataset.name}")
    swept = sweep(ctx.catalog, ctx.store, grace_s=params.grace_s)
    return {"datasets": len(datasets), "files_merged": merged, "records_moved": moved,
            "records_lost": sum(lost.values()), "lost": lost,
            "retired_deleted": swept.retired_deleted, "orphans_deleted": swept.orphans_deleted,
            "expired_claims": swept.expired_claims,
            "temporary_deleted": swept.temporary_deleted}


def run_expire(ctx: OperationContext) -> dict[str, Any]:
    """Delete production records older than their dataset's ``retention_days``."""
    expired: dict[str, int] = {}
    datasets = [d for d in ctx.catalog.list_datasets(ctx.operation.embedding_set_key)
                if d.split == "production" and d.retention_days]
    now = datetime.now(UTC)
    for i, dataset in enumerate(datasets):
        cutoff = now - timedelta(days=dataset.retention_days or 0)
        expired[dataset.name] = ctx.catalog.expire_records(dataset.name, cutoff)
        if expired[dataset.name] and dataset.embedding_set_key is not None:
            invalidate(ctx.settings, dataset.embedding_set_key)  # searches check the catalog
        ctx.progress((i + 1) / max(len(datasets), 1), f"expired {dataset.name}")
    return {"expired": expired}
