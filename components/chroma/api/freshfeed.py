"""Committed records straight into the live index, so they are searchable within moments
of their 201 instead of after the next ``index`` run.

A commit listener (runs in the commit thread, after the requests were answered) hands
each commit's records to one feeder thread, which sends what piled up per embedding set
in one upsert to the index host (``chroma.index.hosting.feed_fresh``). Best effort: the
``index`` run every commit queues still applies the change feed (point ids are
deterministic, so the second upsert is harmless), and the host refuses an upsert that
a delete may have overtaken (``chroma.index.hosting.guard``). Bulk loads (more than
``FRESH_MAX_RECORDS`` of a set waiting) and sets with no index yet are left to the index
run. With the remote backend (cluster) nothing is sent: there is no host to guard
against that race.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from chroma.errors import ChromaError
from chroma.index import IndexedRecord
from chroma.index.hosting import feed_fresh
from chroma.ingest import CommitResult
from chroma.ingest.validation import LogBatch
from chroma.settings import Settings

__all__ = ["FreshFeed"]

log = logging.getLogger(__name__)

UNINDEXED_PAUSE_S = 0.5
"""How long a set that had no index is skipped. Short: the first ``index`` run of a set
publishes its (empty) version at once, and what is skipped waits for the next run."""
FRESH_MAX_RECORDS = 10_000
"""More records of one set waiting at once (a bulk load) are left to the index run: the
indexer would upsert them twice, and the API process would pay for sending them."""


@dataclass
class _Fresh:
    batch: LogBatch
    logged_at: float
    as_of: float
    location: tuple[str, list[int]] | None = None
    """The file and rows the commit wrote the records to (``CommitResult.locations``)."""
    retried: bool = False

    @property
    def key(self) -> str:
        return self.batch.embedding_set_key


class FreshFeed:
    """A commit listener that upserts committed records into the live index."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._unindexed: dict[str, float] = {}
        """Sets whose index did not exist at the last send, and when: their records are
        not sent for ``UNINDEXED_PAUSE_S`` (a first bulk load must not pay for it twice)."""
        self._deferred: dict[str, list[_Fresh]] = {}
        """Records that came during a set's pause: sent once when it ends. The set's first
        index run may have finished meanwhile (it covers only what it read), and then
        nothing else would bring them into the index before the next run."""
        self._queue: queue.SimpleQueue[_Fresh | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="fresh-feed", daemon=True)
        self._thread.start()

    def __call__(self, results: list[CommitResult]) -> None:
        """In the commit thread: only hand over (the feeder thread converts and sends)."""
        for result in results:
            located = result.locations or [None] * len(result.batches)
            for batch, location in zip(result.batches, located, strict=True):
                if result.logged_at is not None and batch.records.ids:
                    self._queue.put(_Fresh(batch, result.logged_at.timestamp(), result.as_of,
                                           location))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            pending, stopping = self._next_pending()
            if pending is None:  # closed while nothing was waiting
                return
            self._send(self._due() + pending)
            # Nothing sent may stay referenced while the thread waits for the next commit
            # (its records and vectors would stay resident until then).
            del pending

    def _next_pending(self) -> tuple[list[_Fresh] | None, bool]:
        """What was committed since the last send (waits for the first, or until a set's
        pause ends: then nothing), and whether a stop came (None: a stop, nothing else)."""
        try:
            item = self._queue.get(timeout=self._until_next_retry())
        except queue.Empty:
            return [], False
        if item is None:
            return None, True
        pending = [item]
        while True:  # whatever piled up meanwhile goes in the same upsert
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                return pending, False
            if more is None:
                return pending, True
            pending.append(more)

    def _pause_end(self, key: str) -> float:
        return self._unindexed.get(key, float("-inf")) + UNINDEXED_PAUSE_S

    def _until_next_retry(self) -> float | None:
        if not self._deferred:
            return None
        return max(0.0, min(map(self._pause_end, self._deferred)) - time.monotonic())

    def _due(self) -> list[_Fresh]:
        """The deferred records of every set whose pause has ended, marked as retried."""
        now = time.monotonic()
        due = [key for key in self._deferred if self._pause_end(key) <= now]
        items = [item for key in due for item in self._deferred.pop(key)]
        for item in items:
            item.retried = True
        return items

    def _send(self, pending: list[_Fresh]) -> None:
        by_key: dict[str, list[_Fresh]] = {}
        for item in pending:
            by_key.setdefault(item.key, []).append(item)
        for key, items in by_key.items():
            if time.monotonic() < self._pause_end(key):
                # No index at the last send: the first index run builds it from the feed.
                # Once more after the pause for what came meanwhile (it may have ended).
                self._defer(key, [item for item in items if not item.retried])
                continue
            if sum(len(item.batch.records.ids) for item in items) > FRESH_MAX_RECORDS:
                continue
            records = [record for item in items for record in _indexed(item)]
            vectors = np.concatenate([item.batch.records.embeddings for item in items])
            # The oldest reading: the host refuses all if a delete may have overtaken any.
            as_of = min(item.as_of for item in items)
            try:
                if feed_fresh(self.settings, key, records, vectors, as_of) < 0:
                    self._unindexed[key] = time.monotonic()
            except ChromaError as exc:  # the index run the commit queued covers them
                log.debug("fresh records of %s not sent to the index: %s", key, exc)
            except Exception:
                log.exception("sending fresh records of %s to the index failed", key)


    def _defer(self, key: str, items: list[_Fresh]) -> None:
        waiting = self._deferred.setdefault(key, [])
        room = FRESH_MAX_RECORDS - sum(len(item.batch.records.ids) for item in waiting)
        for item in items:  # a bulk load beyond this is the index run's anyway
            room -= len(item.batch.records.ids)
            if room < 0:
                break
            waiting.append(item)
        if not waiting:
            del self._deferred[key]


def _indexed(item: _Fresh) -> list[IndexedRecord]:
    """With the file and row of each (the index run then need not read its vector to
    see the live index holds it; -1 or none: it reads and writes it)."""
    batch, logged_at = item.batch, item.logged_at
    records = batch.records
    path, rows = item.location if item.location is not None else (None, [-1] * len(records.ids))
    return [
        IndexedRecord(dataset=batch.dataset, record_id=record_id,
                      split=batch.split,  # type: ignore[arg-type]
                      input_uri=input_uri, inference_class=inference_class,
                      label_class=label_class, tags=tuple(tags or ()), logged_at=logged_at,
                      file_path=path, row_index=row)
        for record_id, input_uri, inference_class, label_class, tags, row in zip(
            records.ids, records.input_uris, records.inference_classes,
            records.label_classes, records.tags, rows, strict=True)
    ]
