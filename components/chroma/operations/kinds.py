"""The one table of operation kinds: what each does, who runs it, what it takes.

Everything that needs to know the kinds reads :data:`KINDS`: the worker (handler), ``chroma
run`` (which worker process takes which kinds, :data:`WORKERS`), ``POST /api/v1/operations``
(the ``kind`` enum and params), the CLI, the IndexJob launcher and, through a unit test,
the IndexJob CRD's ``spec.operation`` enum (:data:`INDEXJOB_KINDS`). Add a kind here and
nowhere else (then regenerate ``chroma-api.yaml`` and the CRD enum).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from chroma.errors import ChromaError, InvalidInput
from chroma.operations import indexing, labelling, maintenance, projection
from chroma.operations.context import OperationContext
from chroma.operations.params import CompactParams, NoParams, RecommendParams, SleepParams

__all__ = [
    "INDEXJOB_KINDS",
    "KINDS",
    "KIND_NAMES",
    "WORKERS",
    "Handler",
    "OperationKind",
    "OperationUnavailable",
    "kind_of",
    "validate_params",
]

Handler = Callable[[OperationContext], dict[str, Any] | None]


@dataclass(frozen=True)
class OperationKind:
    name: str
    handler: Handler
    worker: str
    """The ``chroma run`` worker process that takes it (one kind of work per process)."""
    params: type[BaseModel]
    indexjob: bool
    """An ``IndexJob`` may carry it: in the cluster it can run as a Kubernetes Job."""
    summary: str


KINDS: dict[str, OperationKind] = {kind.name: kind for kind in (
    OperationKind("index", indexing.run_index, "indexer", NoParams, True,
                  "Apply the change feed to the vector index."),
    OperationKind("reindex", indexing.run_reindex, "indexer", NoParams, True,
                  "Build a new index version from every live record and switch to it."),
    OperationKind("fit-mhb", labelling.run_fit_mhb, "mhb", NoParams, True,
                  "Fit the MHB model on the training records, if they changed."),
    OperationKind("recommend", labelling.run_recommend, "recommender", RecommendParams, True,
                  "Score new production records into the labelling queue."),
    OperationKind("compact", maintenance.run_compact, "compactor", CompactParams, True,
                  "Merge small parquet files; sweep retired and orphan files."),
    OperationKind("expire", maintenance.run_expire, "compactor", NoParams, True,
                  "Delete production records past their dataset's retention."),
    # On the mhb worker: fit-mhb is rare (recommend refits itself), and a map is wanted
    # by a person at a screen, not behind a queue of index or recommend runs.
    OperationKind("project", projection.run_project, "mhb", NoParams, False,
                  "Compute the 2-D map (PCA) of the embeddings, for GET /api/v1/map."),
    OperationKind("sleep", maintenance.run_sleep, "compactor", SleepParams, False,
                  "Diagnostic: sleep, reporting progress."),
)}

KIND_NAMES: tuple[str, ...] = tuple(KINDS)
INDEXJOB_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS.values() if k.indexjob)
WORKERS: dict[str, tuple[str, ...]] = {}
for _kind in KINDS.values():
    WORKERS[_kind.worker] = (*WORKERS.get(_kind.worker, ()), _kind.name)
"""Worker processes ``chroma run`` starts, and the operation kinds each one takes."""


class OperationUnavailable(ChromaError):
    """No handler for the operation kind (e.g. a queue row written by a newer version)."""

    status_code = 501
    code = "not_implemented"


def kind_of(name: str) -> OperationKind:
    """The table's entry for ``name``; ``OperationUnavailable`` if there is none."""
    try:
        return KINDS[name]
    except KeyError:
        raise OperationUnavailable(
            f"unknown operation kind {name!r}; known: {list(KIND_NAMES)}") from None


def validate_params(name: str, params: dict[str, Any]) -> None:
    """``InvalidInput`` naming the fields when ``params`` do not fit the kind's model."""
    try:
        kind_of(name).params.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors())
        raise InvalidInput(f"bad params for {name!r}: {problems}") from None
