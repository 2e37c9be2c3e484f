"""The ``project`` operation handler: compute the 2-D map of an embedding set (or of
every set) at its current version, with progress and interruption from the context.
The work is ``chroma.labelling.projection``'s."""

from __future__ import annotations

from typing import Any

from chroma.labelling.projection import compute_map
from chroma.operations.context import OperationContext

__all__ = ["run_project"]


def run_project(ctx: OperationContext) -> dict[str, Any]:
    """Compute (or keep) each set's map; the result names each map's version and size."""
    keys = ([ctx.operation.embedding_set_key] if ctx.operation.embedding_set_key
            else [es.key for es in ctx.catalog.list_embedding_sets()])
    maps: dict[str, Any] = {}
    for i, key in enumerate(keys):
        def progress(fraction: float, message: str, i: int = i) -> None:
            ctx.progress((i + fraction) / len(keys), message)

        made = compute_map(ctx.catalog, ctx.store, key, progress)
        maps[key] = {"version": made.version, "method": made.method, "count": len(made),
                     "timings_s": {k: round(v, 3) for k, v in made.timings.items()}}
    return {"maps": maps}
