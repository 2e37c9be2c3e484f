"""The generic database: PostgreSQL through psycopg, one SQL dialect everywhere.

Owns: the schema (versioned migrations under ``migrations/``, applied at start-up with
yoyo) and every SQL statement of the project (an import-linter contract keeps psycopg
inside this package). :class:`Catalog` answers for embedding sets, datasets, the file
manifest and the record index, and carries one repository per other concern, built once:
``catalog.changes`` (the change feed, index state), ``catalog.queue`` (MHB versions and
the labelling queue), ``catalog.operations`` (the operation queue, components) and
``catalog.live`` (the live check of search hits).

Must not touch: file contents (``chroma.storage``), the vector index, operation kinds
(the table in ``chroma.operations`` says which exist).
Called by: every component that needs to know what exists.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chroma.catalog.catalog import (
        Catalog,
        CommitOutcome,
        DatasetInfo,
        EmbeddingSetInfo,
        FileCommit,
    )
    from chroma.catalog.changes import Changes, DeletedRecord, IndexState
    from chroma.catalog.database import Database, apply_migrations
    from chroma.catalog.live import LiveRecords, RecordRef
    from chroma.catalog.operations import ComponentRow, Operation, Operations
    from chroma.catalog.recommendations import (
        MHBVersion,
        QueueEntry,
        Recommendations,
        RecommendationState,
        ScoredPage,
    )
    from chroma.catalog.records import StoredRecord

# Loaded on first use (PEP 562): importing a submodule (the supervisor's
# ``chroma.catalog.embedded``) must not load psycopg (~24 MiB RSS) with the rest.
_HOMES = {
    "Catalog": "chroma.catalog.catalog",
    "Changes": "chroma.catalog.changes",
    "CommitOutcome": "chroma.catalog.catalog",
    "ComponentRow": "chroma.catalog.operations",
    "Database": "chroma.catalog.database",
    "DatasetInfo": "chroma.catalog.catalog",
    "DeletedRecord": "chroma.catalog.changes",
    "EmbeddingSetInfo": "chroma.catalog.catalog",
    "FileCommit": "chroma.catalog.catalog",
    "IndexState": "chroma.catalog.changes",
    "LiveRecords": "chroma.catalog.live",
    "MHBVersion": "chroma.catalog.recommendations",
    "Operation": "chroma.catalog.operations",
    "Operations": "chroma.catalog.operations",
    "QueueEntry": "chroma.catalog.recommendations",
    "RecommendationState": "chroma.catalog.recommendations",
    "Recommendations": "chroma.catalog.recommendations",
    "RecordRef": "chroma.catalog.live",
    "ScoredPage": "chroma.catalog.recommendations",
    "StoredRecord": "chroma.catalog.records",
    "apply_migrations": "chroma.catalog.database",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "Catalog",
    "Changes",
    "CommitOutcome",
    "ComponentRow",
    "Database",
    "DatasetInfo",
    "DeletedRecord",
    "EmbeddingSetInfo",
    "FileCommit",
    "IndexState",
    "LiveRecords",
    "MHBVersion",
    "Operation",
    "Operations",
    "QueueEntry",
    "RecommendationState",
    "Recommendations",
    "RecordRef",
    "ScoredPage",
    "StoredRecord",
    "apply_migrations",
]
