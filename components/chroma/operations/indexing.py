"""The ``index`` and ``reindex`` operations (named in ``chroma.operations.kinds``).

Both read the catalog's change feed (``catalog.changes``) from the last consumed
``change_seq`` up to a snapshot taken at the start, read vectors from the parquet store
and write through :func:`chroma.index.hosting.host.hosted_engine`, then record what the index
holds in ``index_state`` (shown by ``GET /api/v1/status``). Point ids are deterministic,
so re-running either after a crash or a retry is harmless.

* ``index`` (incremental, queued implicitly after commits): upserts records changed since
  ``indexed_seq`` (new, re-logged or re-tagged), deletes deleted ones. When too many points
  are outside the HNSW graph it builds the graph (see ``Settings.index_rebuild_ratio``);
  Edge: in a background thread, so later runs go on applying the change feed to the live
  version meanwhile (``_start_graph_build``).
  A set with no index yet gets an empty version published at once (the commit path's
  fresh upserts are taken from the first moment), filled page by page (searched by exact
  scan, so records are searchable as they land) or, for a bulk load, replaced by a
  graph-less version a child process writes (searchable at its switch), recorded, and
  only then its graph is built beside it (``reindex``: the live version serves until
  the switch). An index of
  another dimension or metric is built in full instead.
* ``reindex`` (full): builds a new version from every live record, switches to it
  atomically, re-applies what changed during the build, drops older versions.

An operation with no ``embedding_set_key`` covers every embedding set that has records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chroma.catalog import Changes, EmbeddingSetInfo, StoredRecord
from chroma.errors import NotFound
from chroma.index import CollectionInfo, IndexedRecord, QueryEngine
from chroma.index.base import check_distance
from chroma.index.hosting.host import host_guard, hosted_engine
from chroma.operations.context import OperationContext
from chroma.storage import EmbeddingReader

__all__ = ["index_embedding_set", "reindex_embedding_set", "run_index", "run_reindex"]

log = logging.getLogger(__name__)

PAGE = 5_000
"""Records read from the catalog and the store per batch (5000 x 128 floats = 2.5 MB)."""


@dataclass
class _Step:
    """Reports progress of one embedding set as a slice [start, end) of the operation."""

    ctx: OperationContext
    start: float
    end: float

    def __call__(self, fraction: float, message: str) -> None:
        self.ctx.progress(self.start + (self.end - self.start) * min(fraction, 1.0), message)


def run_index(ctx: OperationContext) -> dict[str, Any]:
    """Incremental index of the operation's embedding set (or of every set)."""
    return _each_set(ctx, index_embedding_set)


def run_reindex(ctx: OperationContext) -> dict[str, Any]:
    """Full re-index with an atomic switch, of the operation's embedding set (or every set)."""
    return _each_set(ctx, reindex_embedding_set)


def _each_set(ctx: OperationContext, action: Any) -> dict[str, Any]:
    engine = hosted_engine(ctx.settings)
    key = ctx.operation.embedding_set_key
    sets = ([ctx.catalog.get_embedding_set(key)] if key is not None
            else ctx.catalog.list_embedding_sets())
    sets = [s for s in sets if s.dimension is not None]  # no record yet: nothing to index
    guard = host_guard(ctx.settings)
    results: dict[str, Any] = {}
    for i, info in enumerate(sets):
        step = _Step(ctx, i / len(sets), (i + 1) / len(sets))
        started = time.monotonic()  # before the run's snapshot of the change feed
        results[info.key] = action(ctx, engine, info, step)
        if guard is not None:  # deletes and tags before ``started`` are in the index now
            guard.applied(info.key, started)
    ctx.progress(1.0, f"indexed {len(sets)} embedding set(s)")
    return {"embedding_sets": results}


# -- one embedding set -----------------------------------------------------------------


def index_embedding_set(
    ctx: OperationContext, engine: QueryEngine, info: EmbeddingSetInfo, step: _Step
) -> dict[str, Any]:
    """Apply the changes since ``indexed_seq``; rebuild instead when there is no usable index."""
    began_set, cpu_set = time.perf_counter(), time.thread_time()
    changes = ctx.catalog.changes
    distance = check_distance(info.distance)
    try:
        live = engine.collection_info(info.key)
    except NotFound:
        live = None
    if live is None:
        return _publish_first(ctx, engine, info, step)
    if (live.dimension, live.distance) != (info.dimension, distance):
        return reindex_embedding_set(ctx, engine, info, step)
    state = changes.index_state(info.key)
    after = state.indexed_seq if state is not None else 0
    snapshot = changes.latest_seq(info.key)
    written: list[int] = []
    times = ReadTimes()
    cpu, began = time.thread_time(), time.perf_counter()
    upserted, deleted = _apply_changes(ctx, engine, changes, info.key, after, snapshot, step,
                                       written, times)
    applied = {"apply_s": round(time.perf_counter() - began, 4),
               "apply_cpu_s": round(time.thread_time() - cpu, 4), "reading": times.summary()}
    graph = _maintain_graph(ctx, engine, info, step, applied_seq=snapshot)
    if graph == "rebuilt":
        return {**reindex_summary(changes, engine, info.key), "upserted": upserted,
                "deleted": deleted, "graph": graph}
    current = engine.collection_info(info.key)
    changes.record_index_state(info.key, collection=info.key, version=current.version,
                               indexed_seq=snapshot, indexed_count=current.points)
    return {"version": current.version, "indexed_seq": snapshot, "points": current.points,
            "upserted": upserted, "written": sum(written), "deleted": deleted, "graph": graph,
            **applied, "set_s": round(time.perf_counter() - began_set, 4),
            "set_cpu_s": round(time.thread_time() - cpu_set, 4)}


FILL_ROUNDS = 20
"""Rounds a first index run fills its published version while records keep arriving."""
CHILD_FILL_MIN = 30_000
"""Records of a new set still to fill from which the rest of its first fill is written by
a child process (Edge). Below, filling here costs less than a child's start (~0.6 s of
CPU, seconds on a busy machine); above, it would hold the worker process's GIL for long
(~60 us of CPU a point)."""


def _publish_first(
    ctx: OperationContext, engine: QueryEngine, info: EmbeddingSetInfo, step: _Step
) -> dict[str, Any]:
    """The first index of a set: live and searchable before its graph exists.

    A full build first would leave every record of a new set unsearchable until the
    graph of all of them is built (53 s at 100k x 128); here a search answers by exact
    scan over what is written so far, and the graph is built beside the live version."""
    assert info.dimension is not None
    changes = ctx.catalog.changes
    filled = step.start + 0.4 * (step.end - step.start)  # progress once the fill is done
    engine.ensure_collection(info.key, info.dimension, check_distance(info.distance))
    fill = _Step(ctx, step.start, filled)
    handover = CHILD_FILL_MIN if ctx.settings.index_backend == "edge" else None
    began = time.monotonic()
    snapshot, upserted, deleted, more = _fill_in_place(ctx, engine, info, fill, handover)
    log.info("first fill of %s: %d records in place in %.1f s%s", info.key[:12], upserted,
             time.monotonic() - began, ", the rest by a child" if more else "")
    if more:  # a bulk load: the rest (and what is in already) written by a child
        snapshot, upserted, deleted = _fill_in_child(ctx, engine, info, fill)
    current = engine.collection_info(info.key)
    published = {"version": current.version, "indexed_seq": snapshot,
                 "points": current.points, "upserted": upserted, "deleted": deleted,
                 "published_first": True}
    graph = _maintain_graph(ctx, engine, info, _Step(ctx, filled, step.end))
    if graph == "rebuilt":
        return {**published, **reindex_summary(changes, engine, info.key), "graph": graph}
    if graph in ("optimized", "started", "building"):
        published["points"] = engine.collection_info(info.key).points
    return {**published, "graph": graph}


def _fill_in_place(
    ctx: OperationContext, engine: QueryEngine, info: EmbeddingSetInfo, step: _Step,
    handover: int | None,
) -> tuple[int, int, int, bool]:
    """Fill the published version page by page: records are searchable as they land.

    A first run usually starts with the set's first commit, while a bulk load is still
    arriving (commits over ``FRESH_MAX_RECORDS`` are not fed straight to the index): keep
    filling until a round finds less than a page, so the load is searchable before the
    graph build holds this operation (and the next index run) for a while. Stops early
    (last value True) when a round would start with ``handover`` records or more to go."""
    changes = ctx.catalog.changes
    snapshot = upserted = deleted = 0
    for _ in range(FILL_ROUNDS):
        head = changes.latest_seq(info.key)
        if head <= snapshot:
            break
        if handover is not None and changes.live_count(info.key) - upserted >= handover:
            return snapshot, upserted, deleted, True
        more, gone = _apply_changes(ctx, engine, changes, info.key, snapshot, head, step)
        upserted, deleted, snapshot = upserted + more, deleted + gone, head
        _record(ctx, engine, info.key, snapshot)
        if more + gone < PAGE:
            break
    return snapshot, upserted, deleted, False


def _fill_in_child(
    ctx: OperationContext, engine: QueryEngine, info: EmbeddingSetInfo, step: _Step
) -> tuple[int, int, int]:
    """Fill a bulk-loaded new set as a graph-less version written by a child process
    (every record, also those filled in place already: the published version keeps
    answering them until the switch), then switch to it. Converting and upserting points
    holds the GIL (40-60 us of CPU a point with qdrant-edge-py 0.9): here it would share
    it with the worker process's other operations (a ``recommend`` of the same load);
    the child has it, and a core, to itself.

    The pages are streamed in rounds while the load keeps arriving (as in
    ``_fill_in_place``); the published version takes fresh upserts meanwhile,
    which the switch carries over (``reindex``'s journal). The rest is caught up here."""
    assert info.dimension is not None
    changes = ctx.catalog.changes
    heads: list[int] = []
    written = [0]
    total = max(changes.live_count(info.key), 1)
    times = ReadTimes()

    def rounds() -> Iterator[tuple[Sequence[IndexedRecord], np.ndarray]]:
        after = 0
        for _ in range(FILL_ROUNDS):
            head = changes.latest_seq(info.key)
            if head <= after:
                break
            found = 0
            for page, records, vectors in _pages(ctx, info.key, after, head, times):
                step(0.9 * written[0] / total, f"filling: {written[0]} records")  # may interrupt
                yield records, vectors
                found += len(page)
                written[0] += len(page)
            heads.append(after := head)
            if found < PAGE:
                break

    began = time.monotonic()
    engine.reindex(info.key, info.dimension, check_distance(info.distance), rounds(),
                   graph=False)
    built = heads[-1] if heads else 0
    log.info("first fill of %s: %d records in %d round(s) written by a child and switched "
             "to in %.1f s (reading: %s)", info.key[:12], written[0], len(heads),
             time.monotonic() - began, times)
    # Deleted after the first round read the live records (a later change number):
    # perhaps written to the new version; those after ``built`` are caught up below.
    gone = changes.deletions_since(info.key, heads[0], up_to_seq=built) if heads else []
    if gone:
        engine.delete(info.key, [(d.dataset, d.record_id) for d in gone])
    caught_up = changes.latest_seq(info.key)
    more, deleted = _apply_changes(ctx, engine, changes, info.key, built, caught_up,
                                   _Step(ctx, step.start + 0.9 * (step.end - step.start),
                                         step.end))
    engine.drop_old_versions(info.key)
    _record(ctx, engine, info.key, caught_up)
    return caught_up, written[0] + more, deleted + len(gone)


def _record(ctx: OperationContext, engine: QueryEngine, key: str, indexed_seq: int) -> None:
    current = engine.collection_info(key)
    ctx.catalog.changes.record_index_state(key, collection=key, version=current.version,
                                           indexed_seq=indexed_seq,
                                           indexed_count=current.points)


MAX_REBUILDS = 3
"""Full builds one operation runs in a row while records keep arriving during each."""


def reindex_embedding_set(
    ctx: OperationContext, engine: QueryEngine, info: EmbeddingSetInfo, step: _Step,
    *, rebuilds: int = 1,
) -> dict[str, Any]:
    """Build a new version from every live record, switch, catch up, drop old versions.

    When the catch-up left more than ``index_exact_scan_max`` points outside the graph
    (records kept arriving during the build), the graph is brought up to date as the
    ``index`` operation does: another build, at most ``MAX_REBUILDS`` in a row."""
    assert info.dimension is not None
    wait_for_graph_build()  # a build's copy and journal must not meet a rebuild's
    changes = ctx.catalog.changes
    distance = check_distance(info.distance)
    total = max(changes.live_count(info.key), 1)
    snapshot = 0

    def batches() -> Iterator[tuple[Sequence[IndexedRecord], np.ndarray]]:
        # Read once the engine has created the new version (its first pull): remote index
        # runs write into a version from when it exists, so what they wrote before is in
        # this snapshot, and nothing falls between the two.
        nonlocal snapshot
        snapshot = changes.latest_seq(info.key)
        done = 0
        for page, records, vectors in _pages(ctx, info.key, 0, snapshot):
            step(0.8 * done / total, f"building: {done}/{total} records")  # may interrupt
            yield records, vectors
            done += len(page)
        step(0.8, f"building the graph of {done} records")

    engine.reindex(info.key, info.dimension, distance, batches())
    # Writes made meanwhile went to the previous version: apply them to the new one.
    caught_up = changes.latest_seq(info.key)
    upserted, deleted = _apply_changes(ctx, engine, changes, info.key, snapshot, caught_up,
                                       _Step(ctx, step.start + 0.85 * (step.end - step.start),
                                             step.end))
    dropped = engine.drop_old_versions(info.key)
    current = engine.collection_info(info.key)
    changes.record_index_state(info.key, collection=info.key, version=current.version,
                               indexed_seq=caught_up, indexed_count=current.points)
    result = {"version": current.version, "indexed_seq": caught_up, "points": current.points,
              "built_from_seq": snapshot, "caught_up": upserted + deleted,
              "dropped_versions": dropped, "graph": "rebuilt", "builds": rebuilds}
    if upserted > ctx.settings.index_exact_scan_max:
        graph = _maintain_graph(ctx, engine, info, step, rebuilds=rebuilds)
        if graph != "unchanged":
            return {**result, **reindex_summary(changes, engine, info.key), "graph": graph,
                    "builds": rebuilds + (graph == "rebuilt")}
    return result


def reindex_summary(changes: Changes, engine: QueryEngine, key: str) -> dict[str, Any]:
    state = changes.index_state(key)
    current: CollectionInfo = engine.collection_info(key)
    return {"version": current.version, "points": current.points,
            "indexed_seq": state.indexed_seq if state else 0}


def _apply_changes(
    ctx: OperationContext, engine: QueryEngine, changes: Changes, key: str,
    after: int, up_to: int, step: _Step, written: list[int] | None = None,
    times: ReadTimes | None = None,
) -> tuple[int, int]:
    """Upsert records changed in (after, up_to], delete records deleted in it (``written``
    gets the points each page really wrote: fresh ones are there already, and their
    vectors are not even read; ``times`` gets where the reading went)."""
    if up_to <= after:
        return 0, 0
    span = up_to - after
    upserted = 0
    took = times if times is not None else ReadTimes()
    for page, records, vectors in _pages(ctx, key, after, up_to, took, fresh=engine):
        # ``records``: only those the live index may not hold yet (not fresh from a commit)
        wrote = engine.upsert_changed(key, records, vectors) if records else 0
        if written is not None:
            written.append(wrote)
        upserted += len(page)
        step((page[-1].change_seq - after) / span * 0.9, f"upserted {upserted} records")
    gone = changes.deletions_since(key, after, up_to_seq=up_to)
    if gone:
        engine.delete(key, [(d.dataset, d.record_id) for d in gone])
    step(0.95, f"upserted {upserted}, deleted {len(gone)}")
    return upserted, len(gone)


def _maintain_graph(
    ctx: OperationContext, engine: QueryEngine, info: EmbeddingSetInfo, step: _Step,
    *, rebuilds: int = 0, applied_seq: int | None = None,
) -> str:
    """Keep exact-scanned points bounded: nothing (``unchanged``), ``rebuilt``, or the
    graph of the new points built (``optimized``; Edge: ``started`` in the background,
    ``building`` while it runs, ``waiting`` while this process builds another set's or
    rests after a build).

    ``applied_seq``: the change the live index holds everything up to, recorded before a
    graph build (which changes no record) so the set's index state does not wait for it."""
    settings = ctx.settings
    current = engine.collection_info(info.key)
    unindexed = current.points - current.indexed_points
    if unindexed <= settings.index_exact_scan_max:
        return "unchanged"
    if (building := graph_build_running()) is not None:  # its switch must not race a
        return "building" if building == info.key else "waiting"  # rebuild; one at a time
    if (settings.index_backend == "edge" and rebuilds < MAX_REBUILDS
            and unindexed >= settings.index_rebuild_ratio * max(current.points, 1)):
        reindex_embedding_set(ctx, engine, info, step, rebuilds=rebuilds + 1)
        return "rebuilt"
    if settings.index_backend == "edge" and _resting():
        return "waiting"  # a later run builds it
    if applied_seq is not None:
        _record(ctx, engine, info.key, applied_seq)
    step(0.96, f"building the graph over {unindexed} new points")
    if settings.index_backend != "edge":  # waits for the server's own optimizers
        engine.optimize(info.key)
        return "optimized"
    _start_graph_build(engine, info.key)
    return "started"


_build_lock = threading.Lock()
_graph_build: tuple[str, threading.Thread] | None = None
"""This process's graph build (Edge: a child building on a copy of the live version, 38-55 s
at 1M under load), run by a thread so that index runs go on applying the change feed to
the live version meanwhile (journaled and replayed onto the copy before its switch): the
index lag no longer includes the build. One at a time: each child takes a core."""


_last_build: tuple[float, float] | None = None
"""(began, ended) of this process's last background build (``time.monotonic``)."""


def _resting() -> bool:
    """Whether the last build ended less than its own length ago: builds take at most
    half of the time. Back to back (1,000 rec/s put the points replayed onto each copy
    over ``index_exact_scan_max`` at once), each one's copy, flushes, load and replay
    stalled the index host again and again: 5 builds in a 60 s phase at 200k."""
    with _build_lock:
        if _last_build is None:
            return False
        began, ended = _last_build
    return time.monotonic() - ended < ended - began


def graph_build_running() -> str | None:
    """The key whose graph this process builds in the background, if one is under way."""
    with _build_lock:
        if _graph_build is not None and _graph_build[1].is_alive():
            return _graph_build[0]
        return None


def wait_for_graph_build(timeout: float | None = None) -> bool:
    """Wait for this process's background graph build; False if it still runs."""
    with _build_lock:
        running = _graph_build
    if running is not None:
        running[1].join(timeout)
        return not running[1].is_alive()
    return True


def _start_graph_build(engine: QueryEngine, key: str) -> None:
    global _graph_build

    def build() -> None:
        global _last_build
        began = time.monotonic()
        try:
            before = engine.collection_info(key).version
            engine.optimize(key)  # Edge: switches to the copy with the graph when done
            if engine.collection_info(key).version != before:
                engine.drop_old_versions(key)  # the copy it switched from, once released
        except Exception:  # the live version serves on; a later index run tries again
            log.exception("graph build of %s failed after %.1f s", key[:12],
                          time.monotonic() - began)
        else:
            log.info("graph build of %s done in %.1f s", key[:12], time.monotonic() - began)
        finally:
            with _build_lock:
                _last_build = (began, time.monotonic())

    thread = threading.Thread(target=build, name=f"graph-{key[:12]}", daemon=True)
    with _build_lock:
        _graph_build = (key, thread)
        thread.start()


Loaded = tuple[list[StoredRecord], list[IndexedRecord], np.ndarray]


@dataclass
class ReadTimes:
    """Where a walk of the change feed spent its time (seconds, summed over pages):
    the catalog's pages, the store's vectors, the index records built from them (in the
    read-ahead thread), and how long the consumer waited for a page (read-bound)."""

    catalog_s: float = 0.0
    vectors_s: float = 0.0
    records_s: float = 0.0
    fresh_s: float = 0.0
    waited_s: float = 0.0
    reader_cpu_s: float = 0.0
    pages: int = 0
    records: int = field(default=0)
    vectors_read: int = 0
    """Vectors read from the store: records the live index held fresh are not read."""

    def __str__(self) -> str:
        return (f"{self.records} records in {self.pages} pages ({self.vectors_read} vectors"
                f" read): catalog {self.catalog_s:.2f} s, vectors {self.vectors_s:.2f} s,"
                f" index records {self.records_s:.2f} s, fresh check {self.fresh_s:.2f} s,"
                f" waited for pages {self.waited_s:.2f} s, reader CPU {self.reader_cpu_s:.2f} s")

    def summary(self) -> dict[str, float]:
        """For an operation's result (rounded)."""
        return {name: round(float(getattr(self, name)), 4) for name in (
            "catalog_s", "vectors_s", "records_s", "fresh_s", "waited_s", "reader_cpu_s",
            "pages", "records", "vectors_read")}


def _pages(ctx: OperationContext, key: str, after: int, up_to: int,
           times: ReadTimes | None = None, *, fresh: QueryEngine | None = None,
           ) -> Iterator[Loaded]:
    """The records changed in (after, up_to], a page at a time, with their vectors.

    With ``fresh`` (an index run's catch-up), each page's index records carry their
    file and row, and only those ``fresh.not_fresh`` names (and their vectors) are
    yielded with the full catalog page: at steady state the commit path upserted every
    new record already, and the store (many small files) is not read for them at all.

    The next page is read (catalog query, parquet file) by a helper thread while the
    caller writes the current one into the index: both reads mostly wait outside the
    GIL (PostgreSQL, file I/O and decoding), the index writes hold it. One page ahead at
    most; leaving the loop early waits for that one read."""
    pages = ctx.catalog.changes.iter_records_since(key, after, page=PAGE, up_to_seq=up_to)
    vectors = EmbeddingReader(ctx.store)
    took = times if times is not None else ReadTimes()

    def load() -> Loaded | None:
        cpu = time.thread_time()
        began = time.perf_counter()
        page = next(pages, None)
        if page is None:
            return None
        read = time.perf_counter()
        records = _indexed(page, located=fresh is not None)
        built = time.perf_counter()
        wanted: Sequence[StoredRecord] = page
        if fresh is not None:
            keep = fresh.not_fresh(key, records)
            if len(keep) < len(records):
                records, wanted = [records[i] for i in keep], [page[i] for i in keep]
        checked = time.perf_counter()
        matrix = (vectors([(r.file_path, r.row_index) for r in wanted]) if wanted
                  else np.empty((0, 0), dtype=np.float32))
        took.catalog_s += read - began
        took.records_s += built - read
        took.fresh_s += checked - built
        took.vectors_s += time.perf_counter() - checked
        took.reader_cpu_s += time.thread_time() - cpu
        took.pages += 1
        took.records += len(page)
        took.vectors_read += len(wanted)
        return page, records, matrix

    with ThreadPoolExecutor(1, thread_name_prefix="index-read") as reader:
        ahead = reader.submit(load)
        while True:
            waiting = time.perf_counter()
            loaded = ahead.result()
            took.waited_s += time.perf_counter() - waiting
            if loaded is None:
                return
            ahead = reader.submit(load)
            yield loaded


def _indexed(page: Sequence[StoredRecord], *, located: bool = False) -> list[IndexedRecord]:
    """Index records of ``page``; ``located``: with their file and row (for the fresh
    check; left out otherwise, so builds do not carry them to their child processes)."""
    return [
        IndexedRecord(
            dataset=r.dataset, record_id=r.record_id, split=r.split,  # type: ignore[arg-type]
            input_uri=r.input_uri, inference_class=r.inference_class,
            label_class=r.label_class, tags=tuple(r.tags or ()),
            logged_at=r.logged_at.timestamp(),
            file_path=r.file_path if located else None,
            row_index=r.row_index if located else -1,
        )
        for r in page
    ]

