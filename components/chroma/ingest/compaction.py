"""Compaction and sweeps: keep the store made of few large files, and nothing stray.

* :func:`compact_dataset` merges a dataset's small files into one (live rows only) and
  swaps the manifest atomically; records changed meanwhile are not touched.
* :func:`sweep` deletes retired files after a grace period (readers may still hold them)
  and orphans: files in the store the manifest never recorded (a crash between the
  durable write and the catalog commit), once they are older than the grace period.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from chroma.catalog import Catalog
from chroma.storage import FileStore

__all__ = ["CompactionResult", "SweepResult", "compact_dataset", "merge_live_rows", "sweep"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompactionResult:
    files_merged: int
    records_moved: int
    new_path: str | None


@dataclass(frozen=True)
class SweepResult:
    retired_deleted: int
    orphans_deleted: int


def merge_live_rows(
    catalog: Catalog, store: FileStore, files: list[tuple[int, str]]
) -> tuple[pa.Table | None, list[tuple[str, int, int, int]]]:
    """The live rows of ``files`` as one table, and the moves (id, old file, old row, new row)."""
    rows = catalog.live_rows([file_id for file_id, _ in files])
    pieces = []
    moves: list[tuple[str, int, int, int]] = []
    for file_id, path in files:
        file_rows = [r for r in rows if r[1] == file_id]
        if not file_rows:
            continue
        table = store.read_table(path)
        pieces.append(table.take(pa.array([r[2] for r in file_rows], pa.int64())))
        for record_id, _, old_row in file_rows:
            moves.append((record_id, file_id, old_row, len(moves)))
    return (pa.concat_tables(pieces) if pieces else None), moves


def compact_dataset(
    catalog: Catalog, store: FileStore, dataset: str, *, small_file_rows: int = 100_000
) -> CompactionResult:
    """Merge the dataset's files smaller than ``small_file_rows`` into one file."""
    info = catalog.get_dataset(dataset)
    files = catalog.small_files(info.id, small_file_rows)
    if len(files) < 2:
        return CompactionResult(0, 0, None)
    merged, moves = merge_live_rows(catalog, store, files)
    old_ids = [file_id for file_id, _ in files]
    if merged is None:  # nothing live is left in them: retire them all
        catalog.retire_files(old_ids)
        return CompactionResult(len(files), 0, None)
    new_path = (
        f"{info.embedding_set_key}/{dataset}/"
        f"compact-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.parquet"
    )
    size = store.write_table(new_path, merged)
    moved = catalog.swap_files(info.id, old_ids, new_path, size, moves)
    log.info("compacted %s: %d files, %d records moved", dataset, len(files), moved)
    return CompactionResult(len(files), moved, new_path)


def sweep(catalog: Catalog, store: FileStore, *, grace_s: float = 3600.0) -> SweepResult:
    """Delete retired files and orphans older than ``grace_s`` seconds."""
    # Forget first, then delete: a crash in between leaves an orphan (removed below, next
    # time), never a manifest row without its file.
    retired = catalog.forget_files([file_id for file_id, _ in catalog.retired_files(grace_s)])
    for _, path in retired:
        store.delete(path)

    known = catalog.known_file_paths()
    orphans = 0
    cutoff = time.time() - grace_s
    for path in store.list_files():
        if path in known or not path.endswith(".parquet"):
            continue
        if _modified(store, path) < cutoff:
            store.delete(path)
            orphans += 1
    return SweepResult(len(retired), orphans)


def _modified(store: FileStore, relpath: str) -> float:
    info = store.fs.info(store.url(relpath))
    stamp = info.get("mtime") or info.get("LastModified") or info.get("created")
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    return float(stamp) if stamp is not None else time.time()
