"""The ``fit-mhb`` and ``recommend`` operation handlers: ``chroma.labelling``'s runs,
once per embedding set of the operation (or every set), with progress and interruption
from the :class:`OperationContext`."""

from __future__ import annotations

from typing import Any

from chroma.labelling import LabellingJob, fit_mhb_of, recommend_one
from chroma.operations.context import OperationContext
from chroma.operations.params import RecommendParams

__all__ = ["run_fit_mhb", "run_recommend"]


def _jobs(ctx: OperationContext) -> list[LabellingJob]:
    keys = ([ctx.operation.embedding_set_key] if ctx.operation.embedding_set_key
            else [es.key for es in ctx.catalog.list_embedding_sets()])
    return [LabellingJob(ctx.catalog, ctx.store, ctx.settings, key, progress=ctx.progress)
            for key in keys]


def run_fit_mhb(ctx: OperationContext) -> dict[str, Any]:
    """Fit (or keep) the MHB model of each embedding set's training data."""
    fitted: dict[str, Any] = {}
    jobs = _jobs(ctx)
    for i, job in enumerate(jobs):
        result = fit_mhb_of(job)
        fitted[job.key] = {"version": result.version.version, "refitted": result.refitted,
                           "training_count": result.version.training_count}
        ctx.progress((i + 1) / len(jobs), f"MHB of {job.key[:12]} v{result.version.version}")
    return {"models": fitted}


def run_recommend(ctx: OperationContext) -> dict[str, Any]:
    """Score new production records (or all, when the model changed) into the queue."""
    full = RecommendParams.model_validate(ctx.operation.params).full
    return {"embedding_sets": {job.key: recommend_one(job, full=full) for job in _jobs(ctx)}}
