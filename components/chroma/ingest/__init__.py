"""The write path: validate -> embedding_set_key -> durable commit -> acknowledge.

Owns: the wire models of ``/log`` input (JSON and Arrow IPC), their validation into
columnar :class:`~chroma.storage.RecordBatch` es, and the group committer that turns
concurrent requests into one parquet file per dataset plus one catalog transaction.
Must not touch: HTTP (``chroma.api``) or the vector index.
Called by: ``chroma.api`` (``POST /log``) and tools that ingest without HTTP.
"""

from chroma.ingest.arrow import parse_arrow_log
from chroma.ingest.committer import CommitResult, GroupCommitter
from chroma.ingest.models import LogRequest, RecordIn, parse_json_log
from chroma.ingest.validation import LogBatch

__all__ = [
    "CommitResult",
    "GroupCommitter",
    "LogBatch",
    "LogRequest",
    "RecordIn",
    "parse_arrow_log",
    "parse_json_log",
]
