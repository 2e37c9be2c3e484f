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
