"""The generic database: PostgreSQL through psycopg, one SQL dialect everywhere.

Owns: the schema (versioned migrations under ``migrations/``, applied at start-up with
yoyo), embedding sets, datasets, the file manifest, the record index and its change
sequence, and (later migrations) operations and recommendations.
Must not touch: file contents (``chroma.storage``) or the vector index.
Called by: every component that needs to know what exists.
"""

from chroma.catalog.catalog import (
    Catalog,
    CommitOutcome,
    DatasetInfo,
    EmbeddingSetInfo,
    FileCommit,
    RecordRow,
)
from chroma.catalog.changes import ChangedRecord, Changes, DeletedRecord, IndexState
from chroma.catalog.database import Database, apply_migrations
from chroma.catalog.operations import OPERATION_KINDS, ComponentRow, Operation, Operations
from chroma.catalog.recommendations import (
    MHBVersion,
    QueueEntry,
    Recommendations,
    RecommendationState,
    ScoredRow,
)

__all__ = [
    "OPERATION_KINDS",
    "Catalog",
    "ChangedRecord",
    "Changes",
    "CommitOutcome",
    "ComponentRow",
    "Database",
    "DatasetInfo",
    "DeletedRecord",
    "EmbeddingSetInfo",
    "FileCommit",
    "IndexState",
    "MHBVersion",
    "Operation",
    "Operations",
    "QueueEntry",
    "RecommendationState",
    "Recommendations",
    "RecordRow",
    "ScoredRow",
    "apply_migrations",
]
