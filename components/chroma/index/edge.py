"""Embedded backend: Qdrant Edge (``qdrant_edge``) shards on local disk, in-process.

One directory per embedding set, one Qdrant Edge shard per version, a pointer file naming
the live one::

    <path>/<embedding_set_key>/
        LOCK        flock'd while a version is created, switched to or dropped
        CURRENT     the live version's directory name, replaced atomically (rename)
        v000001/    a shard (Qdrant Edge files) + chroma-index.json (dimension, distance)
        v000002/    ...

A full re-index builds ``v<n+1>`` beside the live version, builds its HNSW graph, then
replaces ``CURRENT``; searches hold a lease on the shard they started on, so a retired
shard is closed only when its last search returns. No search fails or sees half a build.

Qdrant Edge locks a shard's write-ahead log, so **one process at a time can open a
version**. Another process may re-index (it writes a new version directory); an engine
that sees ``CURRENT`` change switches on its next call once the builder has closed the
shard, and keeps serving the old version until then. Incremental writes must go through
the process that has the live version open.

Qdrant Edge runs no background optimizer: ``optimize`` builds the HNSW graph over
points written since the last call; until then they are scanned exactly. It does so in a
child process, on a copy of the live version that then replaces it like a rebuild's (the
live one keeps serving and taking writes meanwhile; see ``EdgeQueryEngine.optimize``).
The previous version stays on disk until ``drop_old_versions``. A shard whose
vectors are smaller than ``INDEXING_THRESHOLD_KB`` gets no graph at all (a scan is as
fast), so ``collection_info`` counts all its points as needing none.

Writes are journaled while a ``reindex`` of the key builds (see ``_journaled``), and the
journal is replayed onto the new version mostly *without* the journal lock: live writes
wait only for the last few entries and the switch, never for a whole replay.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import pickle
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import qdrant_edge as edge

from chroma.errors import ChromaError, Conflict, InvalidInput, NotFound, Unavailable
from chroma.index._claims import claim_path, orphaned, write_claim
from chroma.index.base import (
    CollectionInfo,
    Distance,
    IndexedRecord,
    Neighbour,
    QueryEngine,
    RecordRef,
    SearchFilter,
    StoredHit,
    as_matrix,
    check_dimension,
    check_distance,
    check_k,
    check_key,
    check_mutable_fields,
    check_records,
    neighbour_from_payload,
    score_to_distance,
    search_ef,
    stored_vector,
)
from chroma.index.config import IndexConfig
from chroma.index.filling import FillScan, merge_hits
from chroma.keys import point_id
from chroma.lifetime import PARENT_PID_ENV
from chroma.memory import add_release_hook, drop_file_pages

__all__ = ["EdgeQueryEngine"]

log = logging.getLogger(__name__)

_POINTER = "CURRENT"
_LOCK = "LOCK"
_META = "chroma-index.json"
_EDGE_DISTANCE = {
    "cosine": edge.Distance.Cosine,
    "dot": edge.Distance.Dot,
    "euclid": edge.Distance.Euclid,
}
_KEYWORD_FIELDS = ("dataset", "split", "inference_class", "label_class", "tags")
INDEXING_THRESHOLD_KB = 10_000
"""Edge builds a segment's HNSW graph only above this many kilobytes of vectors (its
own default, made explicit): below, the segment is scanned, which is as fast. So a whole
shard below it is never graphed, and no build or ``optimize`` would change that."""
REPLAY_UNDER_LOCK = 8
"""Journal entries a ``reindex`` replays while holding the journal lock (with the switch);
the rest is replayed before, in rounds, while live writes go on."""
REPLAY_ROUNDS = 10
FRESH_REMEMBERED = 50_000
"""Points a shard remembers as written by a plain ``upsert`` (fresh from a commit) until
an index run's ``upsert_changed`` meets them (~150 bytes each): 50 s at 1,000 rec/s."""


PAYLOAD_INDEX_MEMORY = edge.Memory.Cold
"""Where a version's payload indexes live: mmap'd from their files (``Cold``), not read
into RAM. Opening a version reads in-RAM indexes whole, holding the GIL (qdrant-edge-py
0.9): the ``logged_at`` index rebuilt a BTree of every point, so opening a built 1M
version stalled every search and upsert of the index host for seconds after each graph
build. mmap'd, the open is ~5x cheaper and the indexes cost page cache instead of RSS;
a filtered search reads them through the page cache (``bench/edge_load.py``)."""


def _payload_indexes(filter_graph: bool) -> list[tuple[str, Any]]:
    """Payload indexes for every filterable field (see ``IndexConfig.filter_graph``)."""
    memory = PAYLOAD_INDEX_MEMORY
    indexes: list[tuple[str, Any]] = [
        (name, edge.KeywordIndexParams(enable_hnsw=filter_graph, memory=memory))
        for name in _KEYWORD_FIELDS
    ]
    indexes.append(("logged_at", edge.FloatIndexParams(enable_hnsw=filter_graph,
                                                       memory=memory)))
    return indexes


def move_payload_indexes(shard: edge.EdgeShard) -> list[str]:
    """Recreate the payload indexes of ``shard`` that are not in ``PAYLOAD_INDEX_MEMORY``
    (a version made before it: read into RAM at every open) with the same fields and
    ``filter_graph``; the fields moved. Only for a version nobody searches (a graph
    build's copy): between the delete and the create a filter has no index."""
    schema = shard.info().payload_schema
    moved = []
    for name, params in _payload_indexes(False):
        present = schema.get(name)
        if present is None or present.params.memory == PAYLOAD_INDEX_MEMORY:
            continue
        filter_graph = bool(present.params.enable_hnsw)
        params = dict(_payload_indexes(filter_graph))[name]
        shard.update(edge.UpdateOperation.delete_field_index(name))
        shard.update(edge.UpdateOperation.create_field_index(name, params))
        moved.append(name)
    return moved


def _version_dir_name(version: int) -> str:
    return f"v{version:06d}"


def _parse_version(name: str) -> int | None:
    if len(name) == 7 and name[0] == "v" and name[1:].isdigit():
        return int(name[1:])
    return None


def _remove_version(version_dir: Path) -> None:
    shutil.rmtree(version_dir, ignore_errors=True)
    claim_path(version_dir).unlink(missing_ok=True)


@contextmanager
def _translate_errors(action: str) -> Iterator[None]:
    """Qdrant Edge raises bare ``Exception``s; map them by message to ``chroma.errors``."""
    try:
        yield
    except ChromaError:
        raise
    except Exception as exc:
        message = str(exc)
        lowered = message.lower()
        if "wouldblock" in lowered:
            raise Unavailable(
                f"{action}: the index shard is open in another process", details=message
            ) from exc
        if "dimension error" in lowered or "wrong input" in lowered or "bad input" in lowered:
            raise InvalidInput(f"{action}: {message}") from exc
        if "does not exist" in lowered or "not found" in lowered:
            raise NotFound(f"{action}: {message}") from exc
        raise Unavailable(f"{action}: {message}") from exc


class _Pickled(NamedTuple):
    """A batch checked and pickled already, as :func:`_build_in_child` sends it: what
    waits for the child in :func:`_scanned`'s queue is then one buffer per batch, not
    thousands of ``IndexedRecord`` objects (which, alive for a whole fill, left the
    worker's pymalloc arenas fragmented after it)."""

    data: bytes
    points: int


_Batch = tuple[Sequence[IndexedRecord], np.ndarray] | _Pickled


def _pickled(records: Sequence[IndexedRecord], matrix: np.ndarray) -> _Pickled:
    return _Pickled(pickle.dumps((list(records), matrix), protocol=5), len(records))


def _build_in_child(
    version_dir: Path, first: _Batch, rest: Iterator[_Batch], dimension: int,
    batch_size: int, *, graph: bool,
) -> None:
    """Stream the points to ``chroma.index._hnsw_build`` writing the closed shard at
    ``version_dir`` (and building its graph unless not ``graph``); waiting for it and
    reading the batches release the GIL, converting points there does not hold ours."""
    command = [sys.executable, "-m", "chroma.index._hnsw_build", str(version_dir),
               "--write", str(batch_size)] + ([] if graph else ["--no-graph"])
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=errors,
                                 env={**os.environ, PARENT_PID_ENV: str(os.getpid())})
        assert child.stdin is not None
        began = time.perf_counter()
        sending = points = 0.0
        try:
            try:
                for batch in itertools.chain((first,), rest):
                    if not isinstance(batch, _Pickled):
                        records, vectors = batch
                        matrix = as_matrix(vectors, dimension)
                        check_records(records, matrix)  # bad input fails here, not in the child
                        batch = _pickled(records, matrix)
                    sent = time.perf_counter()
                    child.stdin.write(batch.data)
                    sending += time.perf_counter() - sent
                    points += batch.points
            except BrokenPipeError:
                pass  # the child failed: its exit status and stderr say why
            finally:
                with contextlib.suppress(BrokenPipeError):
                    child.stdin.close()
            fed = time.perf_counter()
            code = child.wait()
        except BaseException:  # interrupted or bad input: the build is abandoned
            child.kill()
            child.wait()
            raise
        if code != 0:
            errors.seek(0)
            raise Unavailable(f"writing index version {version_dir} failed (exit {code})",
                              details=errors.read()[-2000:].decode(errors="replace"))
    # Sending blocks while the child is busy converting (a pipe holds 64 KiB); the rest
    # of the feeding is waiting for the caller's pages; after it, the child's tail.
    log.info("index version %s: %d points fed to its child in %.2f s (%.2f s of it sending),"
             " the child ended %.2f s later%s", version_dir.name, points, fed - began, sending,
             time.perf_counter() - fed, "" if graph else " (no graph)")


PRECOPY_ROUNDS = 3
"""Rounds of copying a live version while writes go on, before the one that holds them."""
PRECOPY_ENOUGH = 32 * 2**20
"""Bytes a round may copy (written during the round before) for the next round to be the
one that holds writes."""
MTIME_SLACK_S = 1.0
"""A file whose mtime is this close to (or after) the first flush of a copy is copied
again with writes held: the kernel stamps mtimes from a coarse clock (a tick or so)."""


class _TreeCopier:
    """A ``chroma.index._tree_copy`` child copying ``source`` to ``target`` in rounds on
    request (``sync``); it dies with this process, and is ended when the copy is left."""

    def __init__(self, source: Path, target: Path) -> None:
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by __exit__)
        self._child = subprocess.Popen(
            [sys.executable, "-m", "chroma.index._tree_copy", str(source), str(target)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors, text=True,
            env={**os.environ, PARENT_PID_ENV: str(os.getpid())})

    def sync(self, since: float | None) -> int:
        """One round (see ``_tree_copy.sync_tree``): the bytes it wrote."""
        child = self._child
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write(f"{'' if since is None else repr(since)}\n")
            child.stdin.flush()
            answer = child.stdout.readline()
        except BrokenPipeError:
            answer = ""
        if not answer.strip().isdigit():
            child.kill()
            child.wait()
            self._errors.seek(0)
            raise Unavailable(f"copying an index version failed (exit {child.returncode})",
                              details=self._errors.read()[-2000:].decode(errors="replace"))
        return int(answer)

    def __enter__(self) -> _TreeCopier:
        return self

    def __exit__(self, *exc: object) -> None:
        child = self._child
        assert child.stdin is not None and child.stdout is not None
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        finally:
            child.stdout.close()
            self._errors.close()


def _optimize_in_child(version_dir: Path) -> None:
    """Have ``chroma.index._hnsw_build`` load the closed shard at ``version_dir``, build
    its graph (Edge's optimizers, to completion), flush and close it; waiting for it
    releases the GIL. Killed when this is interrupted (and with this process)."""
    command = [sys.executable, "-m", "chroma.index._hnsw_build", str(version_dir)]
    began = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=errors,
                                 env={**os.environ, PARENT_PID_ENV: str(os.getpid())})
        try:
            code = child.wait()
        except BaseException:
            child.kill()
            child.wait()
            raise
        if code != 0:
            errors.seek(0)
            raise Unavailable(f"building the graph of index version {version_dir} failed"
                              f" (exit {code})",
                              details=errors.read()[-2000:].decode(errors="replace"))
    log.info("index version %s: graph built by a child in %.2f s", version_dir.name,
             time.perf_counter() - began)


def _fingerprint(record: IndexedRecord) -> int | None:
    """The record's fields and where its vector is stored (file, row: files are never
    rewritten, so they name the vector exactly); ``None`` when the writer did not say."""
    if record.file_path is None or record.row_index < 0:
        return None
    return hash((record, record.file_path, record.row_index))


def _scanned(
    batches: Iterable[tuple[Sequence[IndexedRecord], np.ndarray]], scan: FillScan, dimension: int,
) -> Iterator[_Batch]:
    """``batches``, read by a helper thread as fast as they come and each added to
    ``scan`` at once: the child converting them sets the pace of what this yields, not
    of what is searchable. Read-ahead stops at the scan's limit (memory); an exception
    of the reading (e.g. the operation interrupted) is raised here; leaving early stops
    the reader after its current batch."""
    pending: queue.Queue[_Batch | BaseException | None] = queue.Queue()
    stop = threading.Event()

    def read() -> None:
        source = iter(batches)
        try:
            for records, vectors in source:
                batch: _Batch = (records, vectors)
                with contextlib.suppress(InvalidInput):  # the build refuses it
                    matrix = as_matrix(vectors, dimension)
                    check_records(records, matrix)
                    scan.add(records, matrix)
                    batch = _pickled(records, matrix)
                del records, vectors  # only the pickled batch waits in the queue
                pending.put(batch)
                while len(scan) >= scan.limit and pending.qsize() > 2 and not stop.is_set():
                    stop.wait(0.05)
                if stop.is_set():
                    break
            pending.put(None)
        except BaseException as exc:  # handed to the consumer
            pending.put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=read, name="fill-read", daemon=True)
    reader.start()
    try:
        while (item := pending.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def upsert_points(
    shard: edge.EdgeShard, records: Sequence[IndexedRecord], matrix: np.ndarray, batch_size: int
) -> int:
    """Upsert ``records`` with their vectors (checked already), ``batch_size`` per update."""
    for start in range(0, len(records), batch_size):
        rows = matrix[start : start + batch_size].tolist()
        points = [
            edge.Point(point_id(record.dataset, record.record_id), row, record.stored_payload())
            for record, row in zip(records[start : start + batch_size], rows, strict=True)
        ]
        shard.update(edge.UpdateOperation.upsert_points(points))
    return len(records)


_OWN_FIELDS = ("record_id", "input_uri")
"""Payload fields that differ from point to point; the rest (dataset, split, classes,
tags, logged_at: one per commit) are mostly shared by a bulk load's points."""
MAX_GROUP_SHARE = 0.1
"""``upsert_points_grouped`` falls back to whole payloads when a batch has more payload
groups than this share of its points (each group costs one ``set_payload``)."""


def upsert_points_grouped(
    shard: edge.EdgeShard, records: Sequence[IndexedRecord], matrix: np.ndarray, batch_size: int
) -> int:
    """``upsert_points`` for a version nobody searches yet (a child writing a new one):
    each point gets only its own fields, then the fields its batch shares are set with
    one ``set_payload`` per group. Edge converts a payload at ~4 us a key, once per
    ``set_payload`` instead of once per point. The payloads stored are the same; between
    the two updates a point lacks its shared fields, so never on a live version."""
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        payloads = [record.stored_payload() for record in batch]
        ids = [point_id(record.dataset, record.record_id) for record in batch]
        groups: dict[tuple[Any, ...], list[str]] = {}
        for pid, payload in zip(ids, payloads, strict=True):
            shared = tuple((name, tuple(value) if isinstance(value, list) else value)
                           for name, value in payload.items() if name not in _OWN_FIELDS)
            groups.setdefault(shared, []).append(pid)
        rows = matrix[start : start + batch_size].tolist()
        if len(groups) > MAX_GROUP_SHARE * len(batch):
            points = [edge.Point(pid, row, payload)
                      for pid, row, payload in zip(ids, rows, payloads, strict=True)]
            shard.update(edge.UpdateOperation.upsert_points(points))
            continue
        points = [edge.Point(pid, row, {name: payload[name] for name in _OWN_FIELDS
                                        if name in payload})
                  for pid, row, payload in zip(ids, rows, payloads, strict=True)]
        shard.update(edge.UpdateOperation.upsert_points(points))
        for shared, members in groups.items():
            fields = {name: list(value) if isinstance(value, tuple) else value
                      for name, value in shared}
            shard.update(edge.UpdateOperation.set_payload(members, fields))
    return len(records)


class _Shard:
    """An open version plus the bookkeeping that lets it retire without breaking readers."""

    def __init__(
        self,
        shard: edge.EdgeShard,
        version: int,
        dimension: int,
        distance: Distance,
        pointer_stamp: tuple[int, int] | None,
    ) -> None:
        self.shard = shard
        self.version = version
        self.dimension = dimension
        self.distance = distance
        self.pointer_stamp = pointer_stamp
        self.users = 0
        self.retired = False
        self.key = ""
        self.fresh: OrderedDict[str, int] = OrderedDict()
        """Point id -> fingerprint of the record and vector a plain upsert wrote last
        (oldest first, at most ``FRESH_REMEMBERED``): only ever true of this shard, so
        dropped with it; deletes and payload changes forget their points."""

    def remember(self, records: Sequence[IndexedRecord]) -> None:
        """Note what a plain upsert wrote; a record without its stored place (or one a
        later record of its group commit replaced in the store: row -1) is forgotten, so
        an index run writes it from the catalog."""
        fresh = self.fresh
        ids = [point_id(record.dataset, record.record_id) for record in records]
        # An id twice in one upsert: which of its vectors the shard kept is not ours to say.
        twice = ({pid for pid, n in Counter(ids).items() if n > 1} if len(set(ids)) < len(ids)
                 else set())
        for pid, record in zip(ids, records, strict=True):
            fresh.pop(pid, None)
            if pid not in twice and (mark := _fingerprint(record)) is not None:
                fresh[pid] = mark
        while len(fresh) > FRESH_REMEMBERED:
            fresh.popitem(last=False)

    def forget(self, ids: Iterable[str]) -> None:
        for pid in ids:
            self.fresh.pop(pid, None)

    def changed(self, records: Sequence[IndexedRecord]) -> list[int]:
        """Positions of ``records`` this shard does not hold exactly: record fields, file
        and row as a fresh upsert wrote them (their fresh entries are used up: what is
        written next is the index run's)."""
        if not self.fresh:
            return list(range(len(records)))
        keep = []
        for i, record in enumerate(records):
            held = self.fresh.pop(point_id(record.dataset, record.record_id), None)
            if held is None or held != _fingerprint(record):
                keep.append(i)
        return keep

    def close(self) -> None:
        """Flush and close; called on retirement, where a failure must not fail a search."""
        try:
            self.shard.flush()
            self.shard.close()
        except Exception:
            log.exception("closing index version %d failed", self.version)


class EdgeQueryEngine(QueryEngine):
    """``QueryEngine`` over Qdrant Edge shards under ``config.path``."""

    def __init__(self, config: IndexConfig) -> None:
        if config.path is None:
            raise InvalidInput("the edge index backend needs a path")
        self._config = config
        self._search_threads = config.edge_search_threads or default_search_threads()
        self._root = Path(config.path)
        self._root.mkdir(parents=True, exist_ok=True)
        # Guards _live and every lease count; held only for bookkeeping, never for a query.
        self._lock = threading.Lock()
        self._live: dict[str, _Shard] = {}
        self._draining: set[_Shard] = set()
        """Retired shards that searches still hold (closed when the last one returns)."""
        self._journal_lock = threading.Lock()
        self._journals: dict[str, list[tuple[Any, ...]]] = {}
        """Writes to the live version of each key whose new version ``reindex`` builds."""
        self._pointer_paths: dict[str, str] = {}
        """Each key's ``CURRENT`` file as a string: every search stats it, and building
        the ``Path`` each time cost more than the ``stat`` (a single search's ~25 us)."""
        self._fill_scans: dict[str, FillScan] = {}
        """What a graph-less build of each key has read so far, searched beside the live
        version until the switch (see ``chroma.index.filling``)."""
        self._quantization_search = _quantization_search(config)
        self._closed = False
        add_release_hook(self._release_wal_pages)

    def _release_wal_pages(self) -> None:
        """Reclaim the resident pages of the open shards' write-ahead logs (a 32 MiB
        segment each, ~44 MiB of RSS after 100k upserts): once written they are read only
        by a recovery, from disk. Called by ``chroma.memory.release_unused``."""
        with self._lock:
            shards = [*self._live.values(), *self._draining]
        for shard in shards:
            drop_file_pages(self._collection_dir(shard.key) / _version_dir_name(shard.version)
                            / "wal")

    # -- layout and locking ------------------------------------------------------------

    def _collection_dir(self, key: str) -> Path:
        return self._root / check_key(key)

    @contextmanager
    def _file_lock(self, key: str) -> Iterator[None]:
        """Cross-process (and cross-thread: one open file each) exclusive lock per key."""
        directory = self._collection_dir(key)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / _LOCK, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _pointer_stamp(self, key: str) -> tuple[int, int] | None:
        path = self._pointer_paths.get(key)
        if path is None:  # checked once per key; a key is its directory for good
            path = self._pointer_paths[key] = str(self._collection_dir(key) / _POINTER)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns)

    def _read_pointer(self, key: str) -> int | None:
        try:
            name = (self._collection_dir(key) / _POINTER).read_text().strip()
        except FileNotFoundError:
            return None
        version = _parse_version(name)
        if version is None:
            raise Unavailable(f"index pointer of {key} is corrupt: {name!r}")
        return version

    def _write_pointer(self, key: str, version: int) -> None:
        """Atomic switch: write a temporary file, fsync it, rename it over ``CURRENT``."""
        directory = self._collection_dir(key)
        temporary = directory / f"{_POINTER}.tmp"
        with open(temporary, "w") as handle:
            handle.write(_version_dir_name(version) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, directory / _POINTER)
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)

    def _existing_versions(self, key: str) -> list[int]:
        directory = self._collection_dir(key)
        if not directory.is_dir():
            return []
        versions = (_parse_version(entry.name) for entry in directory.iterdir() if entry.is_dir())
        return sorted(version for version in versions if version is not None)

    def _claim_version_dir(self, key: str) -> tuple[int, Path]:
        """Reserve the next version number; ``mkdir`` is atomic, so racing builders differ."""
        directory = self._collection_dir(key)
        directory.mkdir(parents=True, exist_ok=True)
        version = max(self._existing_versions(key), default=0) + 1
        while True:
            candidate = directory / _version_dir_name(version)
            try:
                candidate.mkdir()
            except FileExistsError:
                version += 1
                continue
            write_claim(candidate)  # so a build this process leaves behind can be told apart
            return version, candidate

    # -- opening, leasing, retiring ---------------------------------------------------

    def _edge_config(self, dimension: int, distance: Distance) -> edge.EdgeConfig:
        config = self._config
        return edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=dimension, distance=_EDGE_DISTANCE[distance]),
            max_search_threads=self._search_threads,
            hnsw_config=edge.HnswIndexConfig(
                m=config.hnsw_m,
                ef_construct=config.hnsw_ef_construct,
                full_scan_threshold=config.full_scan_threshold_kb,
            ),
            optimizers=edge.EdgeOptimizersConfig(
                default_segment_number=config.edge_segment_number,
                indexing_threshold=INDEXING_THRESHOLD_KB,
            ),
            quantization_config=_quantization_config(config),
        )

    def _open_version(self, key: str, version: int, stamp: tuple[int, int] | None) -> _Shard:
        version_dir = self._collection_dir(key) / _version_dir_name(version)
        try:
            meta = json.loads((version_dir / _META).read_text())
        except FileNotFoundError as exc:
            raise Unavailable(f"index version {version} of {key} has no {_META}") from exc
        # Only the vectors (as stored: Edge checks them) and the search pool's size: every
        # other setting stays the shard's own.
        settings = edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=int(meta["dimension"]),
                                          distance=_EDGE_DISTANCE[meta["distance"]]),
            max_search_threads=self._search_threads)
        began = time.perf_counter()
        with _translate_errors(f"opening index version {version} of {key}"):
            shard = edge.EdgeShard.load(str(version_dir), settings)
        # The open holds this process's GIL throughout (qdrant-edge-py 0.9): its length
        # is a stall of every search and upsert here (see PAYLOAD_INDEX_MEMORY).
        log.info("index %s: v%d opened in %.3f s", key[:12], version,
                 time.perf_counter() - began)
        opened = _Shard(shard, version, int(meta["dimension"]), meta["distance"], stamp)
        opened.key = key
        return opened

    def _current(self, key: str) -> _Shard:
        """The live shard of ``key``, (re)opened if ``CURRENT`` moved. Caller holds _lock."""
        if self._closed:
            raise Unavailable("the query engine is closed")
        stamp = self._pointer_stamp(key)
        live = self._live.get(key)
        if live is not None and live.pointer_stamp == stamp:
            return live
        version = self._read_pointer(key)
        if version is None:
            raise NotFound(f"no index for embedding set {key}")
        if live is not None and live.version == version:
            live.pointer_stamp = stamp
            return live
        try:
            opened = self._open_version(key, version, stamp)
        except Unavailable:
            if live is None:
                raise
            # Another process built the new version and still has it open: keep serving
            # the previous one rather than failing the search; retry on the next call.
            log.warning(
                "index %s: version %d not openable yet, serving %d", key, version, live.version
            )
            return live
        self._install(key, opened)
        return opened

    def _install(self, key: str, opened: _Shard) -> None:
        """Make ``opened`` live and retire the previous shard. Caller holds _lock."""
        previous = self._live.get(key)
        self._live[key] = opened
        if previous is not None:
            self._retire(previous)

    def _retire(self, shard: _Shard) -> None:
        shard.retired = True
        if shard.users == 0:
            shard.close()
        else:  # searches still hold it: its files must stay until they return
            self._draining.add(shard)

    @contextmanager
    def _lease(self, key: str) -> Iterator[_Shard]:
        """Use the live shard of ``key``; a concurrent switch closes it only after release."""
        check_key(key)
        with self._lock:
            shard = self._current(key)
            shard.users += 1
        try:
            yield shard
        finally:
            with self._lock:
                shard.users -= 1
                if shard.retired and shard.users == 0:
                    self._draining.discard(shard)
                    shard.close()

    def _switch(self, key: str, built: _Shard) -> None:
        """Point ``CURRENT`` at ``built`` and make it live here, as one step for searches
        of this process (caller holds the file lock): a search between the two would see
        the new pointer, try to open the version this engine holds open and fail."""
        with self._lock:
            self._write_pointer(key, built.version)
            built.pointer_stamp = self._pointer_stamp(key)
            self._install(key, built)

    # -- building a version -----------------------------------------------------------

    def _build_version(
        self,
        key: str,
        dimension: int,
        distance: Distance,
        batches: Iterable[_Batch],
        *,
        graph: bool = True,
    ) -> _Shard:
        """A complete, flushed new version (its HNSW graph built unless not ``graph``),
        open here but not yet live.

        Points are written and the graph built by a child process (see ``_hnsw_build``)
        fed from ``batches``: searches here are not stalled by the GIL meanwhile.
        """
        version, version_dir = self._claim_version_dir(key)
        try:
            with _translate_errors(f"creating index version {version} of {key}"):
                shard = edge.EdgeShard.create(
                    str(version_dir), self._edge_config(dimension, distance)
                )
            try:
                with _translate_errors(f"creating payload indexes of {key} v{version}"):
                    for name, schema in _payload_indexes(self._config.filter_graph):
                        shard.update(edge.UpdateOperation.create_field_index(name, schema))
            finally:
                shard.flush()
                shard.close()
            pending = iter(batches)
            first = next(pending, None)
            if first is not None:
                _build_in_child(version_dir, first, pending, dimension,
                                self._config.upsert_batch_size, graph=graph)
            (version_dir / _META).write_text(
                json.dumps({"dimension": dimension, "distance": distance, "version": version})
            )
            return self._open_version(key, version, None)
        except BaseException:
            _remove_version(version_dir)
            raise

    def _write_points(
        self, shard: _Shard, key: str, records: Sequence[IndexedRecord], vectors: np.ndarray
    ) -> int:
        matrix = as_matrix(vectors, shard.dimension)
        check_records(records, matrix)
        with _translate_errors(f"upserting into {key}"):
            return upsert_points(shard.shard, records, matrix, self._config.upsert_batch_size)

    # -- QueryEngine: collections -----------------------------------------------------

    def ensure_collection(
        self, key: str, dimension: int, distance: Distance = "cosine"
    ) -> CollectionInfo:
        check_key(key)
        check_dimension(dimension)
        check_distance(distance)
        with self._file_lock(key):
            if self._read_pointer(key) is None:
                built = self._build_version(key, dimension, distance, ())
                self._switch(key, built)
        info = self.collection_info(key)
        if (info.dimension, info.distance) != (dimension, distance):
            raise Conflict(
                f"index {key} exists with dimension {info.dimension} and {info.distance} "
                f"distance, not {dimension} and {distance}"
            )
        return info

    def collection_info(self, key: str) -> CollectionInfo:
        # The shard's own tally, not an exact count: an exact count walks every point
        # (~9 ms of CPU per 100k, GIL held; an index run asks three times). The tally is
        # exact here because the live shard is never optimized in place (graphs are built
        # by a child on a copy), so no point is ever in two segments at once
        # (test_index_edge.py::test_collection_info_counts_what_an_exact_count_counts).
        with self._lease(key) as shard, _translate_errors(f"counting {key}"):
            tally = shard.shard.info()
            points, indexed = tally.points_count, tally.indexed_vectors_count
        if points * shard.dimension * 4 < INDEXING_THRESHOLD_KB * 1024:
            indexed = points  # too small for a graph: scanned by design, nothing to build
        return CollectionInfo(
            key, shard.version, shard.dimension, shard.distance, points, min(indexed, points)
        )

    def drop_collection(self, key: str) -> None:
        directory = self._collection_dir(key)
        with self._file_lock(key):
            with self._lock:
                live = self._live.pop(key, None)
                if live is not None:
                    self._retire(live)
            (directory / _POINTER).unlink(missing_ok=True)
            for version in self._existing_versions(key):
                _remove_version(directory / _version_dir_name(version))

    # -- QueryEngine: writes ----------------------------------------------------------

    def upsert(self, key: str, records: Sequence[IndexedRecord], vectors: np.ndarray) -> int:
        # One journal entry (and one hold of the journal lock) per request-sized slice: a
        # page of the indexer's catch-up must not hold a fresh commit's upsert back long.
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[np.newaxis, :]
        check_records(records, matrix)  # all or nothing: before the first slice is written
        step = self._config.upsert_batch_size
        if len(records) <= step:
            return int(self._journaled(key, ("upsert", records, matrix)) or 0)
        return sum(
            int(self._journaled(key, ("upsert", records[start:start + step],
                                      matrix[start:start + step])) or 0)
            for start in range(0, len(records), step)
        )

    def upsert_changed(
        self, key: str, records: Sequence[IndexedRecord], vectors: np.ndarray
    ) -> int:
        """``upsert`` leaving out the points the live shard holds exactly, fresh from
        their commit: the index run would otherwise write every fresh record twice,
        holding the host process's GIL (~45 us a point) while searches wait."""
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[np.newaxis, :]
        check_records(records, matrix)
        step = self._config.upsert_batch_size
        return sum(
            int(self._journaled(key, ("upsert_changed", records[start:start + step],
                                      matrix[start:start + step])) or 0)
            for start in range(0, len(records), step)
        )

    def not_fresh(self, key: str, records: Sequence[IndexedRecord]) -> list[int]:
        """Positions of ``records`` the live shard does not hold exactly from a fresh
        upsert (``_Shard.changed``), asked before their vectors are read. Leaving the
        others out is as safe as ``upsert_changed`` doing it: what the live shard holds a
        version built beside it holds too (from the catalog or the journal), a switch to
        a rebuilt version starts with no memory, and deletes and tags forget points."""
        if not records:
            return []
        with self._journal_lock, self._lease(key) as shard:
            return shard.changed(records)

    def delete(self, key: str, refs: Iterable[RecordRef]) -> None:
        ids = [point_id(dataset, record_id) for dataset, record_id in refs]
        if ids:
            self._journaled(key, ("delete", ids))

    def set_payload(self, key: str, refs: Iterable[RecordRef], fields: Mapping[str, Any]) -> None:
        payload = check_mutable_fields(fields)
        ids = [point_id(dataset, record_id) for dataset, record_id in refs]
        if ids and payload:
            self._journaled(key, ("set_payload", ids, payload))

    def _journaled(self, key: str, write: tuple[Any, ...]) -> int | None:
        """Apply ``write`` to the live shard, and remember it while a ``reindex`` of
        ``key`` builds here: it is applied to the new version before the switch, so a
        record written meanwhile (e.g. fresh from a commit) never drops out of search."""
        with self._journal_lock:
            with self._lease(key) as shard:
                done = self._apply(shard, key, write)
            journal = self._journals.get(key)
            if journal is not None:  # only what was searchable (no live version: nothing)
                journal.append(write)
            return done

    def _apply(self, shard: _Shard, key: str, write: tuple[Any, ...]) -> int | None:
        kind = write[0]
        if kind == "upsert":
            written = self._write_points(shard, key, write[1], write[2])
            shard.remember(write[1])
            return written
        if kind == "upsert_changed":
            records, matrix = write[1], write[2]
            keep = shard.changed(records)
            if len(keep) < len(records):
                records, matrix = [records[i] for i in keep], matrix[keep]
            return self._write_points(shard, key, records, matrix) if records else 0
        shard.forget(write[1])
        if kind == "delete":
            if (scan := self._fill_scans.get(key)) is not None:
                scan.forget(write[1])
            with _translate_errors(f"deleting from {key}"):
                shard.shard.update(edge.UpdateOperation.delete_points(write[1]))
            return None
        with _translate_errors(f"setting payload in {key}"):
            # Only points that exist: set_payload must never create a payload-only point.
            present = [record.id for record in shard.shard.retrieve(write[1], False, False)]
            if present:
                shard.shard.update(edge.UpdateOperation.set_payload(present, write[2]))
        return None

    def optimize(self, key: str) -> None:
        """Build the graph over the live version's unindexed points in a child process,
        on a copy of the live version, then switch to it as ``reindex`` does.

        qdrant-edge-py 0.9 holds the GIL for a whole ``optimize`` (seconds to tens of
        seconds, more when segments merge), so in place it stalled every search and fresh
        upsert of the index host. Here the live version keeps answering and taking writes
        (journaled, replayed onto the copy before the switch); writes wait only while
        the files changed since a first, unlocked copy are copied again (``_copy_live``).
        Nothing is done when every point is in a graph (or the shard is too small for
        one), or when a rebuild of ``key`` under way here gives it a graph anyway."""
        info = self.collection_info(key)
        if info.indexed_points >= info.points:
            return
        with self._journal_lock:
            if key in self._journals:
                return
        with self._lease(key) as live:
            version, version_dir = self._claim_version_dir(key)
            try:
                copied = self._copy_live(key, live, version_dir)
            except BaseException:
                _remove_version(version_dir)
                raise
        if copied is None:  # a rebuild began meanwhile
            _remove_version(version_dir)
            return
        journal, points = copied
        try:
            (version_dir / _META).write_text(json.dumps(
                {"dimension": live.dimension, "distance": live.distance, "version": version}))
            _optimize_in_child(version_dir)
            built = self._open_version(key, version, None)
            try:
                if (built_points := built.shard.info().points_count) != points:
                    # A torn copy must never go live (see _copy_live): fail, keep the live.
                    raise Unavailable(f"the copy of index {key} v{live.version} holds"
                                      f" {built_points} points, not {points}")
                replayed = self._replay(built, key, journal)
                with self._journal_lock:  # no write between the last entries and the switch
                    self._replay_entries(built, key, journal[replayed:])
                    with self._lock:
                        now = self._current(key)
                    if now is not live:
                        raise Conflict(f"index {key} switched to v{now.version} during the"
                                       f" graph build of a copy of v{live.version}")
                    # Same points as the live version: what came fresh is still written.
                    built.fresh = OrderedDict(live.fresh)
                    with self._file_lock(key):
                        self._switch(key, built)
            except BaseException:
                built.close()
                raise
        except BaseException:
            _remove_version(version_dir)
            raise
        finally:
            with self._journal_lock:
                self._journals.pop(key, None)

    def _copy_live(
        self, key: str, live: _Shard, version_dir: Path
    ) -> tuple[list[tuple[Any, ...]], int] | None:
        """Copy the live version's files to ``version_dir`` as one consistent state, and
        journal the writes to ``key`` from that state on; the new (empty) journal and
        the points copied, or ``None`` if a rebuild of ``key`` journals them already.

        Copied in rounds while writes go on, each after a flush, the later ones only the
        files written since the round before began (the new segment and the write-ahead
        log, not the graphs of the sealed segments); then, with writes held (journal
        lock), once more after a last flush. A flush msyncs Edge's mappings, so a later
        write through one marks its file's mtime again (Linux write-protects the pages
        once they are clean). Writes wait only for that last round. The files are copied
        by a child (``_TreeCopier``): this process's GIL plays no part in the wait."""
        source = self._collection_dir(key) / _version_dir_name(live.version)
        since: float | None = None
        copied = 0
        with _TreeCopier(source, version_dir) as copier:
            for round_ in range(PRECOPY_ROUNDS):
                with self._journal_lock, _translate_errors(f"flushing {key}"):
                    live.shard.flush()
                    began = time.time()
                changed = copier.sync(since)
                copied += changed
                since = began - MTIME_SLACK_S
                if round_ > 0 and changed <= PRECOPY_ENOUGH:
                    break
            with self._journal_lock:
                held = time.perf_counter()
                if key in self._journals:
                    return None
                with _translate_errors(f"flushing {key}"):
                    live.shard.flush()
                    points = live.shard.info().points_count
                flushed = time.perf_counter() - held
                again = copier.sync(since)
                journal = self._journals[key] = []
                held = time.perf_counter() - held
        log.info("index %s: v%d copied for a graph build (%.0f MiB, then %.0f MiB with writes"
                 " held for %.3f s, %.3f s of it the flush)", key[:12], live.version,
                 copied / 2**20, again / 2**20, held, flushed)
        return journal, points

    def reindex(
        self,
        key: str,
        dimension: int,
        distance: Distance,
        batches: Iterable[tuple[Sequence[IndexedRecord], np.ndarray]],
        *,
        graph: bool = True,
    ) -> CollectionInfo:
        check_key(key)
        check_dimension(dimension)
        check_distance(distance)
        with self._journal_lock:
            mine = key not in self._journals
            journal = self._journals.setdefault(key, [])
        scan = None
        if not graph and self._read_pointer(key) is not None:  # a first fill: see filling.py
            scan = self._fill_scans[key] = FillScan(dimension, distance)
            batches = _scanned(batches, scan, dimension)
        try:
            built = self._build_version(key, dimension, distance, batches, graph=graph)
            replayed = self._replay(built, key, journal)
            with self._journal_lock:  # no write between the last entries and the switch
                self._replay_entries(built, key, journal[replayed:])
                with self._file_lock(key):
                    self._switch(key, built)
        finally:
            if scan is not None:
                self._fill_scans.pop(key, None)
            if mine:
                with self._journal_lock:
                    self._journals.pop(key, None)
        return self.collection_info(key)

    def _replay(self, built: _Shard, key: str, journal: list[tuple[Any, ...]]) -> int:
        """Apply the journal to ``built`` in order, in rounds, without the journal lock,
        until at most ``REPLAY_UNDER_LOCK`` entries are left; how many were applied.

        Only this thread writes ``built``, and live writes only append to ``journal``,
        so entries reach the new version in the order they reached the live one."""
        replayed = 0
        for _ in range(REPLAY_ROUNDS):
            with self._journal_lock:
                pending = journal[replayed:]
            if len(pending) <= REPLAY_UNDER_LOCK:
                break
            self._replay_entries(built, key, pending)
            replayed += len(pending)
        return replayed

    def _replay_entries(self, built: _Shard, key: str, entries: list[tuple[Any, ...]]) -> None:
        for write in entries:
            if not write[0].startswith("upsert") or write[1]:
                self._apply(built, key, write)

    def drop_old_versions(self, key: str) -> list[int]:
        directory = self._collection_dir(key)
        dropped: list[int] = []
        with self._file_lock(key):
            live_version = self._read_pointer(key)
            if live_version is None:
                return dropped
            with self._lock:
                # Versions of *this* key still open here: the live one, and retired ones
                # that searches still hold.
                open_here = {s.version for s in self._draining if s.key == key}
                if key in self._live:
                    open_here.add(self._live[key].version)
            for version in self._existing_versions(key):
                version_dir = directory / _version_dir_name(version)
                if version < live_version and version not in open_here:
                    _remove_version(version_dir)
                    dropped.append(version)
                elif version == live_version:
                    claim_path(version_dir).unlink(missing_ok=True)  # built: nobody's now
                elif version > live_version and orphaned(version_dir):
                    # A newer version is a build in progress, here or elsewhere, unless
                    # the process that claimed it is gone (killed or stopped mid-build).
                    log.info("index %s: removing v%d, left by a build that did not end",
                             key[:12], version)
                    _remove_version(version_dir)
                    dropped.append(version)
        return dropped

    # -- QueryEngine: reads -----------------------------------------------------------

    def search(
        self,
        key: str,
        queries: np.ndarray,
        k: int = 10,
        filter: SearchFilter | None = None,
        *,
        hnsw_ef: int | None = None,
    ) -> list[list[Neighbour]]:
        return [[neighbour_from_payload(payload, distance) for distance, payload in row]
                for row in self.search_stored(key, queries, k, filter, hnsw_ef=hnsw_ef)]

    def search_stored(
        self,
        key: str,
        queries: np.ndarray,
        k: int = 10,
        filter: SearchFilter | None = None,
        *,
        hnsw_ef: int | None = None,
    ) -> list[list[StoredHit]]:
        check_k(k)
        edge_filter = _edge_filter(filter)
        with self._lease(key) as shard:
            # info() is ~5 us (count() ~3.6 ms at 50k): the graph's size sets the default ef.
            points = shard.shard.info().points_count if hnsw_ef is None else 0
            params = edge.SearchParams(
                hnsw_ef=search_ef(self._config.hnsw_ef_search, hnsw_ef, k, points),
                quantization=self._quantization_search)
            matrix = as_matrix(queries, shard.dimension, what="query vectors")
            requests = [
                edge.QueryRequest(
                    limit=k,
                    query=edge.Query.Nearest(row),
                    filter=edge_filter,
                    with_payload=True,
                    params=params,
                )
                for row in matrix.tolist()
            ]
            with _translate_errors(f"searching {key}"):
                results = shard.shard.query_batch(edge.QueryBatchRequest(requests))
            distance = shard.distance
        found = _stored_hits(distance, results)
        if (scan := self._fill_scans.get(key)) is not None:  # a first fill under way: rare,
            # so its merge may make a Neighbour of each hit
            live = [[neighbour_from_payload(payload, d) for d, payload in row] for row in found]
            merged = merge_hits(live, scan.search(matrix, k, filter), k)
            found = [[(n.distance, n.payload) for n in row] for row in merged]
        return found

    def get_vector(self, key: str, ref: RecordRef) -> np.ndarray:
        dataset, record_id = ref
        with self._lease(key) as shard, _translate_errors(f"reading a vector from {key}"):
            found = shard.shard.retrieve([point_id(dataset, record_id)], False, True)
        if not found or found[0].vector is None:
            raise NotFound(f"record {record_id!r} of dataset {dataset!r} is not in index {key}")
        return stored_vector(shard.distance, found[0].vector)  # type: ignore[arg-type]

    def count(self, key: str, filter: SearchFilter | None = None) -> int:
        with self._lease(key) as shard, _translate_errors(f"counting {key}"):
            return shard.shard.count(edge.CountRequest(exact=True, filter=_edge_filter(filter)))

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            live, self._live = list(self._live.values()), {}
            for shard in live:
                self._retire(shard)


INT8_QUANTILE = 0.99
"""Share of each version's vector components int8's 256 levels span (the rest clipped)."""


def _quantization_config(config: IndexConfig) -> edge.ScalarQuantizationConfig | None:
    """What a new version quantizes: int8 codes held in RAM (``Pinned``), the quantile
    clipping outliers so one extreme value does not waste the 256 levels."""
    if config.quantization == "none":
        return None
    return edge.ScalarQuantizationConfig(type=edge.ScalarType.Int8, quantile=INT8_QUANTILE,
                                         memory=edge.Memory.Pinned)


def _quantization_search(config: IndexConfig) -> edge.QuantizationSearchParams:
    """How a search uses quantized vectors: walk on them, rescore the oversampled best on
    the originals. Sent whatever this engine builds: a version keeps the quantization it
    was built with, and Edge does not rescore one unless told (distances ~1e-2 off); a
    version without quantization ignores it."""
    return edge.QuantizationSearchParams(rescore=True,
                                         oversampling=config.quantization_oversampling)


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the platform says)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def default_search_threads() -> int:
    """A search pool of half the usable CPUs, at least one (see ``IndexConfig``)."""
    return max(1, _usable_cpus() // 2)


def _stored_hits(distance: Distance, results: list[list[Any]]) -> list[list[StoredHit]]:
    """Edge's scored points as ``(distance, payload)`` pairs, the metric chosen once per
    call rather than once per hit (as ``score_to_distance`` does; a batch has 1,000)."""
    if distance == "cosine":  # float rounding can push a self-match below zero
        return [[(max(0.0, 1.0 - hit.score), hit.payload or {}) for hit in hits]
                for hits in results]
    if distance == "dot":
        return [[(-hit.score, hit.payload or {}) for hit in hits] for hits in results]
    return [[(score_to_distance(distance, hit.score), hit.payload or {}) for hit in hits]
            for hits in results]


def _edge_filter(search_filter: SearchFilter | None) -> edge.Filter | None:
    """``SearchFilter`` as a Qdrant Edge filter (``None`` when it selects everything)."""
    if search_filter is None or search_filter.is_empty():
        return None
    must: list[Any] = []
    for field_name, values in (
        ("dataset", search_filter.datasets),
        ("inference_class", search_filter.inference_classes),
        ("label_class", search_filter.label_classes),
        ("tags", search_filter.tags_any),
    ):
        if values:
            must.append(edge.FieldCondition(key=field_name, match=edge.MatchAny(list(values))))
    if search_filter.split is not None:
        must.append(edge.FieldCondition(key="split", match=edge.MatchValue(search_filter.split)))
    if search_filter.logged_from is not None or search_filter.logged_until is not None:
        must.append(
            edge.FieldCondition(
                key="logged_at",
                range=edge.RangeFloat(gte=search_filter.logged_from, lt=search_filter.logged_until),
            )
        )
    must_not: list[Any] = []
    if search_filter.exclude:
        excluded = {point_id(dataset, record_id) for dataset, record_id in search_filter.exclude}
        must_not.append(edge.HasIdCondition(excluded))
    return edge.Filter(must=must or None, must_not=must_not or None)
