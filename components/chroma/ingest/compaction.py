"""Compaction and sweeps: keep the store made of few large files, and nothing stray.

* :func:`compact_dataset` merges a dataset's small files into one (live rows only) and
  swaps the manifest atomically; records changed meanwhile are not touched. A live file
  that vanished from the store behind Chroma's back is *repaired*, not fatal: its records
  (whose data is gone) are deleted from the catalog, as deletions the index and the
  labelling queue follow, logged as a warning and reported in the result; the other
  files are merged as usual, and later compactions no longer meet the missing file.
* :func:`sweep` deletes retired files after a grace period (readers may still hold them),
  the files of writers whose claim expired (they crashed, or outlived their lease), and
  files in the store that are neither in the manifest nor claimed: a failed commit's,
  a crashed sweep's, the temporary files of interrupted local writes.

Why the sweep never deletes a file a commit may still reference: every writer claims its
path in the catalog (committed) *before* writing it, and a commit takes that claim in
its own transaction (see ``chroma.catalog.catalog``). The sweep lists the store first,
then reads manifest and claims in one snapshot: a file it listed existed, so its claim
was committed earlier, so the snapshot shows it claimed or in the manifest, unless its
writer already failed for good. A claimed file is deleted only after the sweep itself
deleted its expired claim, which a later commit of that file then misses and refuses.
No clock or grace period is part of this argument; ``grace_s`` only keeps retired files
for readers, and unclaimed files for writers that predate claims (rolling upgrades).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import pyarrow as pa

from chroma.catalog import Catalog
from chroma.storage import FileStore
from chroma.storage.files import temporary_target

__all__ = [
    "CompactionResult",
    "LostFile",
    "SweepResult",
    "abandon",
    "compact_dataset",
    "merge_live_rows",
    "sweep",
    "write_claimed",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class LostFile:
    """A live file missing from the store, and the records that went with it."""

    path: str
    record_ids: list[str]


@dataclass(frozen=True)
class CompactionResult:
    files_merged: int
    records_moved: int
    new_path: str | None
    lost: list[LostFile] = field(default_factory=list)

    @property
    def records_lost(self) -> int:
        return sum(len(f.record_ids) for f in self.lost)


@dataclass(frozen=True)
class SweepResult:
    retired_deleted: int
    orphans_deleted: int
    expired_claims: int = 0
    temporary_deleted: int = 0


def merge_live_rows(
    catalog: Catalog, store: FileStore, files: list[tuple[int, str]]
) -> tuple[pa.Table | None, list[tuple[str, int, int, int]]]:
    """The live rows of ``files`` as one table, and the moves (id, old file, old row, new row).

    A file missing from the store raises ``NotFound`` (see :func:`compact_dataset`)."""
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
    """Merge the dataset's files smaller than ``small_file_rows`` into one file.

    Live files missing from the store are repaired first (module docstring)."""
    info = catalog.get_dataset(dataset)
    files = catalog.small_files(info.id, small_file_rows)
    if len(files) < 2:
        return CompactionResult(0, 0, None)
    present, lost = _drop_missing(catalog, store, dataset, files)
    merged, moves = merge_live_rows(catalog, store, present)
    old_ids = [file_id for file_id, _ in present]
    if merged is None:  # nothing live is left in them: retire them all
        catalog.retire_files(old_ids)
        return CompactionResult(len(present), 0, None, lost)
    new_path = (
        f"{info.embedding_set_key}/{dataset}/"
        f"compact-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.parquet"
    )
    moved = write_claimed(
        catalog, store, [new_path],
        write=lambda: [store.write_table(new_path, merged)],
        commit=lambda sizes: catalog.swap_files(info.id, old_ids, new_path, sizes[0], moves),
    )
    log.info("compacted %s: %d files, %d records moved", dataset, len(present), moved)
    return CompactionResult(len(present), moved, new_path, lost)


def _drop_missing(
    catalog: Catalog, store: FileStore, dataset: str, files: list[tuple[int, str]]
) -> tuple[list[tuple[int, str]], list[LostFile]]:
    """Split ``files`` into those in the store and those lost (repaired on the way)."""
    present: list[tuple[int, str]] = []
    lost: list[LostFile] = []
    for file_id, path in files:
        if store.exists(path):
            present.append((file_id, path))
            continue
        record_ids = catalog.drop_lost_file(file_id)
        lost.append(LostFile(path, record_ids))
        log.warning(
            "dataset %s: file %s is missing from the store; its %d live records are lost"
            " and were deleted from the catalog: %s", dataset, path, len(record_ids),
            ", ".join(record_ids[:20]) + (" ..." if len(record_ids) > 20 else ""))
    return present, lost


def write_claimed(
    catalog: Catalog, store: FileStore, paths: list[str],
    *, write: Callable[[], list[int]], commit: Callable[[list[int]], T],
) -> T:
    """Claim ``paths``, ``write`` them (returning sizes), ``commit`` them to the catalog
    (which takes the claims); if anything fails, release the claims and remove the files
    no commit took, then re-raise."""
    catalog.claim_files(paths)
    try:
        return commit(write())
    except BaseException:
        abandon(catalog, store, paths)
        raise


def abandon(catalog: Catalog, store: FileStore, paths: list[str]) -> None:
    """Release the claims on ``paths`` and delete the files whose claim this released.

    Best effort: what it cannot do now, the sweep does once the claims expire."""
    try:
        for path in catalog.release_claims(paths):
            store.delete(path)
    except Exception:
        log.warning("could not abandon files %s; the sweep will", paths, exc_info=True)


def sweep(catalog: Catalog, store: FileStore, *, grace_s: float = 3600.0) -> SweepResult:
    """Delete retired files older than ``grace_s`` seconds, the files of expired claims,
    and files neither in the manifest nor claimed (older than ``grace_s``)."""
    # Forget first, then delete: a crash in between leaves an orphan (removed below, next
    # time), never a manifest row without its file.
    retired = catalog.forget_files([file_id for file_id, _ in catalog.retired_files(grace_s)])
    for _, path in retired:
        store.delete(path)
    # Same order for claims: once the claim is deleted here, no commit can take the file.
    expired = catalog.expire_claims()
    for path in expired:
        store.delete(path)

    # List first, then read what to keep (module docstring): the other order would miss
    # a file claimed and written between the two.
    listed = store.list_files(temporary=True)
    keep = catalog.known_file_paths()
    cutoff = time.time() - grace_s
    orphans = temporaries = 0
    for path in listed:
        target = temporary_target(path)
        written_as = target or path
        if not written_as.endswith(".parquet") or written_as in keep:
            continue  # another component's file (e.g. MHB models), or one to keep
        modified = _modified(store, path)
        if modified is None or modified >= cutoff:
            continue
        store.delete(path)
        if target:
            temporaries += 1
        else:
            orphans += 1
    return SweepResult(len(retired), orphans, len(expired), temporaries)


def _modified(store: FileStore, relpath: str) -> float | None:
    """The file's modification time (seconds since the epoch), None if it is gone."""
    try:
        info = store.fs.info(store.url(relpath))
    except FileNotFoundError:
        return None
    stamp = info.get("mtime") or info.get("LastModified") or info.get("created")
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    return float(stamp) if stamp is not None else time.time()
