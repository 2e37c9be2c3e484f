"""What each operation kind does: a registry of handlers, one function per kind.

A handler takes an :class:`OperationContext`, reports progress through it (which is
also where cancellation and shutdown interrupt it), and returns a JSON-able result.
Handlers of other components register lazily by import path, so that this module does
not import the index or the recommender (they may not be installed in every image).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from chroma.control.context import OperationContext
from chroma.errors import ChromaError
from chroma.ingest.compaction import compact_dataset, sweep

__all__ = ["HANDLERS", "OperationUnavailable", "resolve_handler"]

Handler = Callable[[OperationContext], dict[str, Any] | None]


class OperationUnavailable(ChromaError):
    """This build has no handler for the operation kind."""

    status_code = 501
    code = "not_implemented"


def run_sleep(ctx: OperationContext) -> dict[str, Any]:
    """Diagnostic: sleep ``seconds`` (default 5) in steps, reporting progress.

    For checking that workers claim, report, cancel and resume operations."""
    seconds = float(ctx.operation.params.get("seconds", 5))
    steps = max(1, int(seconds * 10))
    for step in range(steps):
        time.sleep(seconds / steps)
        ctx.progress((step + 1) / steps, f"slept {(step + 1) * seconds / steps:.1f}s")
    return {"slept_s": seconds, "attempt": ctx.operation.attempts}


def run_compact(ctx: OperationContext) -> dict[str, Any]:
    """Merge small files of every dataset of the embedding set, then sweep strays."""
    datasets = ctx.catalog.list_datasets(ctx.operation.embedding_set_key)
    small_file_rows = int(ctx.operation.params.get("small_file_rows", 100_000))
    merged = moved = 0
    for i, dataset in enumerate(datasets):
        result = compact_dataset(ctx.catalog, ctx.store, dataset.name,
                                 small_file_rows=small_file_rows)
        merged += result.files_merged
        moved += result.records_moved
        ctx.progress((i + 1) / (len(datasets) + 1), f"compacted {dataset.name}")
    grace_s = float(ctx.operation.params.get("grace_s", 3600))
    swept = sweep(ctx.catalog, ctx.store, grace_s=grace_s)
    return {"datasets": len(datasets), "files_merged": merged, "records_moved": moved,
            "retired_deleted": swept.retired_deleted, "orphans_deleted": swept.orphans_deleted}


def run_expire(ctx: OperationContext) -> dict[str, Any]:
    """Delete production records older than their dataset's ``retention_days``."""
    expired: dict[str, int] = {}
    datasets = [d for d in ctx.catalog.list_datasets(ctx.operation.embedding_set_key)
                if d.split == "production" and d.retention_days]
    now = datetime.now(UTC)
    for i, dataset in enumerate(datasets):
        cutoff = now - timedelta(days=dataset.retention_days or 0)
        expired[dataset.name] = ctx.catalog.expire_records(dataset.name, cutoff)
        ctx.progress((i + 1) / max(len(datasets), 1), f"expired {dataset.name}")
    return {"expired": expired}


HANDLERS: dict[str, Handler | str] = {
    "sleep": run_sleep,
    "compact": run_compact,
    "expire": run_expire,
    # Registered by import path; wired by the index and recommendation components.
    "index": "chroma.indexer.operations:run_index",
    "reindex": "chroma.indexer.operations:run_reindex",
    "fit-mhb": "chroma.recommender.operations:run_fit_mhb",
    "recommend": "chroma.recommender.operations:run_recommend",
}


def resolve_handler(kind: str) -> Handler:
    target = HANDLERS.get(kind)
    if target is None:
        raise OperationUnavailable(f"no handler for operation kind {kind!r}")
    if callable(target):
        return target
    module_name, _, attribute = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise OperationUnavailable(
            f"operation {kind!r} is not available in this build ({target}: {exc})"
        ) from exc
