"""Immutable parquet files of records, through fsspec: a local folder or ``s3://``.

Owns: the on-disk record schema, encoding batches to parquet, durable writes (fsync'd
local files, completed S3 PUTs), reads by file and row, listing for the orphan sweep.
Must not touch: the catalog (which files are live is the catalog's word, not ours).
Called by: ``chroma.ingest`` (writes), compaction, the indexer and recommender (reads).
"""

from chroma.storage.files import FileStore, open_store
from chroma.storage.reading import EmbeddingReader, RecentTables, read_columns, read_embeddings
from chroma.storage.records import RecordBatch, batch_to_table, record_schema

__all__ = [
    "EmbeddingReader",
    "FileStore",
    "RecentTables",
    "RecordBatch",
    "batch_to_table",
    "open_store",
    "read_columns",
    "read_embeddings",
    "record_schema",
]
