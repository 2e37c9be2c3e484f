"""Group commit: concurrent requests share one parquet file per dataset and one transaction.

A single thread owns the commit loop. It takes the first waiting request, collects
others for ``window`` seconds (or until ``max_records``), checks each against the
catalog (a request that fails its checks fails alone), claims one file path per dataset
in the catalog (so no sweep can take the files before they are recorded: see
``chroma.ingest.compaction``), writes the files durably, and records all files and
records in one catalog transaction. The file writes run on their own threads while the
transaction fills the record index (parquet encoding and fsync release the GIL;
PostgreSQL is another process); the transaction commits only after every file is
durable. Only then are the requests' futures resolved, so an acknowledgement always
means "durable". A failed commit releases its claims and removes its files.

One request's bad data must not fail the others: if the catalog refuses the group for
a reason that is some request's fault (a :class:`ChromaError` other than
:class:`Unavailable`, e.g. ``InvalidInput`` for a value PostgreSQL will not store), the
group is split in halves and each half committed on its own, recursively, so only the
culprit fails with that error and everyone else commits (log2(n) extra transactions, on
this rare path only). An outage (:class:`Unavailable`) fails the whole group with 503.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from chroma.catalog import Catalog, FileCommit
from chroma.errors import ChromaError, Unavailable
from chroma.ingest.compaction import abandon
from chroma.ingest.validation import LogBatch
from chroma.storage import FileStore, RecordBatch, batch_to_table

__all__ = ["CommitResult", "GroupCommitter"]

log = logging.getLogger(__name__)


@dataclass
class CommitResult:
    """What one request's commit did."""

    embedding_set_key: str
    ids: list[str]
    inserted: int = 0
    splits: set[str] = field(default_factory=set)
    production_ids: dict[str, list[str]] = field(default_factory=dict)
    """Dataset name -> ids of production records committed (for assessments and triggers)."""
    batches: list[LogBatch] = field(default_factory=list)
    """What was committed (for the API to hand straight to the live index)."""
    locations: list[tuple[str, list[int]]] = field(default_factory=list)
    """Per batch of ``batches``: the file its records were written to and each one's row
    (-1: replaced in the file by a later record of the same id in this group commit)."""
    logged_at: datetime | None = None
    as_of: float = 0.0
    """A ``time.monotonic()`` reading from before the commit's transaction began."""

    @property
    def count(self) -> int:
        return len(self.ids)


@dataclass
class _Pending:
    batches: list[LogBatch]
    future: Future[CommitResult]

    @property
    def size(self) -> int:
        return sum(len(b.records) for b in self.batches)


CommitListener = Callable[[list[CommitResult]], None]


class GroupCommitter:
    """Serialises commits through one thread; :meth:`submit` is safe from any thread."""

    def __init__(
        self,
        catalog: Catalog,
        store: FileStore,
        *,
        window_s: float = 0.004,
        max_records: int = 50_000,
        on_commit: CommitListener | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.window_s = window_s
        self.max_records = max_records
        self.on_commit = on_commit
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._bindings: dict[tuple[str, int, str, str], int] = {}
        self._file_writers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="file-write")
        self.stats = {"commits": 0, "records": 0}

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        # pyarrow's first numpy conversion in a process looks for pandas (~1.5 s to load
        # it where it is installed and not refused: ``chroma serve`` does not refuse it,
        # see chroma.memory.refuse_unused_imports): pay that now, not on the first request.
        pa.array(np.zeros(1, dtype=np.float32))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Commit everything already submitted, then stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def submit(self, batches: list[LogBatch]) -> Future[CommitResult]:
        future: Future[CommitResult] = Future()
        if self._thread is None:
            future.set_exception(Unavailable("the committer is not running"))
            return future
        self._queue.put(_Pending(batches, future))
        return future

    def commit(self, batches: list[LogBatch]) -> CommitResult:
        """Commit synchronously in the caller's thread (tools, tests, the bulk loader)."""
        pending = _Pending(batches, Future())
        self._commit_group([pending])
        return pending.future.result()

    # -- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            group, stopping = self._next_group()
            if group:
                self._commit_group(group)
            # Nothing of this group may stay referenced while the thread waits for the
            # next: a bulk request (vectors, ids, tags) would stay resident until then.
            del group

    def _next_group(self) -> tuple[list[_Pending], bool]:
        """The requests of the next group (waits for the first), and whether a stop came."""
        first = self._queue.get()
        if first is None:
            return [], True
        group = [first]
        size = first.size
        deadline = time.monotonic() + self.window_s
        while size < self.max_records:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else (
                    self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                return group, True
            group.append(item)
            size += item.size
        return group, False

    def _commit_group(self, group: list[_Pending]) -> None:
        accepted = self._accept(group)
        if accepted:
            self._commit_isolating(accepted)

    def _accept(self, group: list[_Pending]) -> list[tuple[_Pending, list[int]]]:
        """The requests that pass their checks, with their dataset ids; the others fail."""
        accepted: list[tuple[_Pending, list[int]]] = []
        for pending in group:
            try:
                dataset_ids = [self._check(batch) for batch in pending.batches]
            except ChromaError as exc:
                pending.future.set_exception(exc)
                continue
            except Exception as exc:  # an unexpected fault must not kill the commit thread
                log.exception("checking a log request failed")
                pending.future.set_exception(Unavailable(f"commit failed: {exc}"))
                continue
            accepted.append((pending, dataset_ids))
        return accepted

    def _commit_isolating(self, accepted: list[tuple[_Pending, list[int]]]) -> None:
        """Commit ``accepted`` as one group; if it is refused for some request's fault,
        commit each half on its own (module docstring), down to the culprit."""
        try:
            results = self._write(accepted)
        except Exception as exc:
            if _requests_fault(exc) and len(accepted) > 1:
                log.warning("a group of %d requests was refused (%s); committing it in "
                            "halves to isolate the culprit", len(accepted), exc)
                half = len(accepted) // 2
                self._commit_isolating(accepted[:half])
                self._commit_isolating(accepted[half:])
                return
            error = exc if isinstance(exc, ChromaError) else Unavailable(f"commit failed: {exc}")
            if not isinstance(exc, ChromaError):
                log.exception("group commit failed")
            for pending, _ in accepted:
                pending.future.set_exception(error)
            return
        for (pending, _), result in zip(accepted, results, strict=True):
            pending.future.set_result(result)
        if self.on_commit is not None:
            try:
                self.on_commit(results)
            except Exception:  # listeners are advisory (e.g. index triggers)
                log.exception("commit listener failed")

    def _check(self, batch: LogBatch) -> int:
        """The dataset id for ``batch`` after checking dimension and binding (cached)."""
        binding = (batch.embedding_set_key, batch.records.dimension, batch.dataset, batch.split)
        dataset_id = self._bindings.get(binding)
        if dataset_id is None:
            # Bindings never change once made, so a cached one stays true.
            dataset_id = self.catalog.bind(
                batch.embedding_set_key, batch.embedding_set, batch.records.dimension,
                batch.dataset, batch.split,
            )
            self._bindings[binding] = dataset_id
        return dataset_id

    def _write(self, accepted: list[tuple[_Pending, list[int]]]) -> list[CommitResult]:
        as_of = time.monotonic()
        now = datetime.now(UTC)
        stamp = np.datetime64(now.replace(tzinfo=None), "us")
        by_dataset: dict[int, list[LogBatch]] = {}
        for pending, dataset_ids in accepted:
            for batch, dataset_id in zip(pending.batches, dataset_ids, strict=True):
                by_dataset.setdefault(dataset_id, []).append(batch)

        commits: list[FileCommit] = []
        tables: list[pa.Table] = []
        located: dict[int, tuple[str, list[int]]] = {}  # id(batch) -> its file and rows
        for dataset_id, batches in by_dataset.items():
            records = RecordBatch.concat([b.records for b in batches]).keep_last_per_id()
            path = (
                f"{batches[0].embedding_set_key}/{batches[0].dataset}/"
                f"part-{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.parquet"
            )
            located.update(_rows(batches, path))
            tables.append(batch_to_table(records, stamp))
            commits.append(
                FileCommit(
                    dataset_id=dataset_id,
                    path=path,
                    size_bytes=0,  # known once written: files_durable() below
                    record_ids=records.ids,
                    input_uris=records.input_uris,
                    inference_classes=records.inference_classes,
                    label_classes=records.label_classes,
                    tags=records.tags,
                    logged_at=now,
                )
            )
        paths = [commit.path for commit in commits]
        self.catalog.claim_files(paths)  # committed before any file exists
        writes = [self._file_writers.submit(self.store.write_table, path, table)
                  for path, table in zip(paths, tables, strict=True)]
        try:
            outcomes = self.catalog.commit_files(
                commits, files_durable=lambda: [write.result() for write in writes])
        except BaseException:
            wait(writes)  # no write may run on behind the clean-up
            abandon(self.catalog, self.store, paths)
            raise
        inserted_by_dataset = {
            c.dataset_id: o.inserted for c, o in zip(commits, outcomes, strict=True)
        }
        self.stats["commits"] += 1
        self.stats["records"] += sum(len(c.record_ids) for c in commits)

        results = []
        for pending, dataset_ids in accepted:
            result = CommitResult(embedding_set_key=pending.batches[0].embedding_set_key, ids=[],
                                  batches=pending.batches, logged_at=now, as_of=as_of,
                                  locations=[located[id(b)] for b in pending.batches])
            for batch, dataset_id in zip(pending.batches, dataset_ids, strict=True):
                result.ids.extend(batch.records.ids)
                result.splits.add(batch.split)
                # Inserted counts are per file; attribute them to the first request only.
                result.inserted += inserted_by_dataset.pop(dataset_id, 0)
                if batch.split == "production":
                    result.production_ids.setdefault(batch.dataset, []).extend(
                        batch.records.ids
                    )
            results.append(result)
        return results


def _rows(batches: list[LogBatch], path: str) -> dict[int, tuple[str, list[int]]]:
    """Where each record of ``batches`` (one dataset's, in order) lands in the file at
    ``path`` as ``keep_last_per_id`` writes it: its row, or -1 when a later record of the
    same id replaced it (the last one logged wins)."""
    ids = [rid for batch in batches for rid in batch.records.ids]
    last = {rid: i for i, rid in enumerate(ids)}
    row_of = {i: row for row, i in enumerate(sorted(last.values()))}
    out: dict[int, tuple[str, list[int]]] = {}
    start = 0
    for batch in batches:
        count = len(batch.records.ids)
        out[id(batch)] = (path, [row_of.get(i, -1) for i in range(start, start + count)])
        start += count
    return out


def _requests_fault(exc: BaseException) -> bool:
    """Whether a failed group commit is some request's fault (retry without it) rather
    than an outage (fail everyone with 503, retrying would only add load)."""
    return isinstance(exc, ChromaError) and not isinstance(exc, Unavailable)
