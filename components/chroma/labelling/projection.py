"""The map of an embedding set: its 2-D projection, computed by the ``project`` operation
and cached in the store, one file per version of the set's data.

**Version.** ``"<change seq>-<scored seq>-<MHB version>"``: the head of the set's change
feed (any log, tag change or deletion moves it) and how far the labelling queue has
scored it (the map colours points by their priority). A map is current when its version
is the set's version now; ``GET /api/v1/map`` answers it then, and otherwise queues the
operation. When only the queue part moved, a run reuses the previous coordinates and
refreshes the columns that come from the catalog (:func:`compute_map`).

**File.** ``<set key>/_map/<version>.arrow``: an Arrow IPC file with one row per live
record (``dataset, id, split, label_class, inference_class, x, y, priority, rank``),
the method, version and time in its schema metadata. Not ``.parquet``: the orphan sweep
(``chroma.ingest.compaction.sweep``) deletes parquet files the catalog does not list.
Older versions are deleted once a newer one is written.

**Cost.** One pass over the catalog (each record's place in the store, classes and
queue priority, kept as Arrow columns), then the files: the rows of a seeded uniform
sample (``SAMPLE_SIZE`` vectors) are read to fit the PCA, then each file is read once
to project its rows. Memory holds the map's columns, the sample and one file's vectors.

Owns: the version, the file's name and layout, computing and reading it. Called by the
``project`` handler (``chroma.operations.projection``) and the API's map route.
Must not touch: HTTP, the operation queue.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from chroma.catalog import Catalog, StoredRecord
from chroma.errors import NotFound
from chroma.scoring.projection import (
    fit_projection,
    sample_positions,
    smallest_ranks,
    stable_rank,
)
from chroma.storage import FileStore, read_embeddings

__all__ = [
    "MAP_DIR",
    "METHOD",
    "PAGE",
    "SAMPLE_SIZE",
    "MapCache",
    "MapTable",
    "compute_map",
    "map_path",
    "map_version",
]

log = logging.getLogger(__name__)

MAP_DIR = "_map"
METHOD = "pca"
SAMPLE_SIZE = 10_000
"""Vectors the PCA is fitted on: the two leading axes of a uniform sample this size are
close to the full data's when they stand out at all (and when they do not, no 2-D
picture is faithful anyway), at a fraction of the cost."""
PAGE = 20_000
"""Records read and projected per step (and per progress report)."""

Progress = Callable[[float, str], None]

_SCHEMA = pa.schema([
    pa.field("dataset", pa.string()),
    pa.field("id", pa.string()),
    pa.field("split", pa.string()),
    pa.field("label_class", pa.string()),
    pa.field("inference_class", pa.string()),
    pa.field("x", pa.float32()),
    pa.field("y", pa.float32()),
    pa.field("priority", pa.float32()),
    pa.field("rank", pa.uint64()),
])


@dataclass(frozen=True)
class MapTable:
    """One cached map: its columns and what the schema metadata says of them."""

    version: str
    method: str
    computed_at: datetime
    table: pa.Table
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    """Seconds per phase of the computation that made it (not stored in the file)."""

    def __len__(self) -> int:
        return self.table.num_rows

    def points(self, limit: int) -> dict[str, Any]:
        """Columns of up to ``limit`` points: those of the smallest ranks (the same ones
        on every call, and mostly the same across versions), in the file's order.
        ``x``, ``y`` and ``priority`` are float32 arrays (NaN: no priority)."""
        taken = self.table.take(pa.array(smallest_ranks(self._rank, limit)))
        priority = taken.column("priority").to_numpy(zero_copy_only=False)
        return {
            "id": taken.column("id").to_pylist(),
            "dataset": taken.column("dataset").to_pylist(),
            "split": taken.column("split").to_pylist(),
            "x": taken.column("x").to_numpy(),
            "y": taken.column("y").to_numpy(),
            "label_class": taken.column("label_class").to_pylist(),
            "inference_class": taken.column("inference_class").to_pylist(),
            "priority": np.asarray(priority, dtype=np.float32),
        }

    @cached_property
    def _rank(self) -> np.ndarray:
        return self.table.column("rank").to_numpy()


def map_version(catalog: Catalog, key: str) -> str:
    """The version the set's map must have to be current (module doc)."""
    seq = catalog.changes.latest_seq(key)
    state = catalog.queue.state(key)
    scored = state.scored_seq if state else 0
    mhb = state.mhb_version if state and state.mhb_version is not None else 0
    return f"{seq}-{scored}-{mhb}"


def map_path(key: str, version: str) -> str:
    return f"{key}/{MAP_DIR}/{version}.arrow"


def _seq_of(version: str) -> int:
    return int(version.split("-", 1)[0])


# -- computing -------------------------------------------------------------------------


def compute_map(
    catalog: Catalog, store: FileStore, key: str, progress: Progress,
    *, sample_size: int = SAMPLE_SIZE, page: int = PAGE,
) -> MapTable:
    """Compute, write and return the set's map at its current version; an existing one
    of that version is returned as it is."""
    info = catalog.get_embedding_set(key)
    version = map_version(catalog, key)  # before reading: a later change makes it stale
    existing = _read(store, key, version)
    if existing is not None:
        return existing
    seq = _seq_of(version)
    timings: dict[str, float] = defaultdict(float)
    previous = _latest_of_seq(store, key, seq)
    if previous is not None:
        progress(0.1, "same records as the previous map: refreshing its labels and priorities")
        with _timed(timings, "queue"):
            table = _refreshed(catalog, previous.table)
    else:
        table = _projected(catalog, store, key, seq, info.distance, progress, timings,
                           sample_size=sample_size, page=page)
    made = MapTable(version, METHOD, datetime.now(UTC), table, timings)
    with _timed(timings, "write"):
        store.write_bytes(map_path(key, version), _encode(made))
        _delete_older(store, key, keep=map_path(key, version))
    progress(1.0, f"map of {len(made)} points, version {version}")
    return made


def _pages(catalog: Catalog, key: str, seq: int, page: int) -> Iterator[list[StoredRecord]]:
    return catalog.changes.iter_records_since(key, 0, page=page, up_to_seq=seq)


def _projected(
    catalog: Catalog, store: FileStore, key: str, seq: int, distance: str, progress: Progress,
    timings: dict[str, float], *, sample_size: int, page: int,
) -> pa.Table:
    """One pass over the catalog (records, their place and priority), then the files:
    the sample's rows read to fit, then each file read once to project its rows."""
    total = max(catalog.changes.live_count(key), 1)
    wanted = sample_positions(total, sample_size)
    pieces: list[pa.Table] = []
    done = 0
    pages = _pages(catalog, key, seq, page)
    while True:
        with _timed(timings, "records"):
            rows = next(pages, None)
        if rows is None:
            break
        with _timed(timings, "queue"):
            priority = _priorities(catalog, rows)
        pieces.append(_piece(rows, priority))
        done += len(rows)
        progress(0.2 * min(done / total, 1.0), f"listed {done} records")
    if not pieces:
        return _SCHEMA.empty_table()
    places = pa.concat_tables(pieces)
    files = places.column("file").combine_chunks().dictionary_encode()
    codes = files.indices.to_numpy()
    row_index = places.column("row").to_numpy()
    with _timed(timings, "fit"):
        sample = wanted[wanted < len(codes)]
        projection = fit_projection(
            _vectors(store, files.dictionary, codes[sample], row_index[sample]),
            distance=distance)
    progress(0.3, f"PCA fitted on a sample of {len(sample)} vectors")
    xy = np.zeros((len(codes), 2), np.float32)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(files.dictionary) + 1))
    for code in range(len(files.dictionary)):
        positions = order[bounds[code]:bounds[code + 1]]
        with _timed(timings, "embeddings"):
            vectors = _vectors(store, files.dictionary, codes[positions], row_index[positions])
        with _timed(timings, "project"):
            xy[positions] = projection.apply(vectors)
        progress(0.3 + 0.65 * (code + 1) / len(files.dictionary),
                 f"projected file {code + 1} of {len(files.dictionary)}")
    with _timed(timings, "project"):
        return _with_coordinates(places, xy)


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] += time.perf_counter() - began


def _vectors(store: FileStore, paths: pa.Array, codes: np.ndarray, rows: np.ndarray
             ) -> np.ndarray:
    """Embeddings of (file code, row) pairs, in order (each file read once)."""
    if not len(codes):
        return np.zeros((0, 0), np.float32)
    return read_embeddings(store, [(paths[int(c)].as_py(), int(r))
                                   for c, r in zip(codes, rows, strict=True)])


def _piece(rows: list[StoredRecord], priority: np.ndarray) -> pa.Table:
    """A page of records as the map's columns, with where each row is stored."""
    return pa.table({
        "dataset": pa.array([r.dataset for r in rows], pa.string()),
        "id": pa.array([r.record_id for r in rows], pa.string()),
        "split": pa.array([r.split for r in rows], pa.string()),
        "label_class": pa.array([r.label_class for r in rows], pa.string()),
        "inference_class": pa.array([r.inference_class for r in rows], pa.string()),
        "priority": pa.array(priority, pa.float32(), mask=np.isnan(priority)),
        "rank": pa.array(stable_rank(f"{r.dataset}\x00{r.record_id}" for r in rows),
                         pa.uint64()),
        "file": pa.array([r.file_path for r in rows], pa.string()),
        "row": pa.array([r.row_index for r in rows], pa.int64()),
    })


def _with_coordinates(places: pa.Table, xy: np.ndarray) -> pa.Table:
    columns = {name: places.column(name) for name in _SCHEMA.names if name not in ("x", "y")}
    columns["x"], columns["y"] = pa.array(xy[:, 0]), pa.array(xy[:, 1])
    return pa.Table.from_arrays([columns[name] for name in _SCHEMA.names], schema=_SCHEMA)


def _priorities(catalog: Catalog, rows: list[StoredRecord]) -> np.ndarray:
    """Queue scores of the production rows (NaN for training and unscored rows)."""
    production = [(r.dataset, r.record_id) for r in rows if r.split == "production"]
    scores = catalog.queue.scores_of(production) if production else {}
    return np.array([scores.get((r.dataset, r.record_id), np.nan) for r in rows],
                    dtype=np.float32)


def _refreshed(catalog: Catalog, table: pa.Table) -> pa.Table:
    """``table`` with priorities re-read from the queue (labels and classes come with
    change numbers, so they cannot have changed when the change seq did not)."""
    datasets = table.column("dataset").to_pylist()
    ids = table.column("id").to_pylist()
    splits = table.column("split").to_pylist()
    production = [(d, i) for d, i, s in zip(datasets, ids, splits, strict=True)
                  if s == "production"]
    scores: dict[tuple[str, str], float] = {}
    for start in range(0, len(production), PAGE):
        scores.update(catalog.queue.scores_of(production[start:start + PAGE]))
    priority = np.array([scores.get(ref, np.nan) for ref in zip(datasets, ids, strict=True)],
                        dtype=np.float32)
    column = pa.array(priority, pa.float32(), mask=np.isnan(priority))
    return table.set_column(table.schema.get_field_index("priority"), "priority", column)


# -- the file ------------------------------------------------------------------------------


def _encode(made: MapTable) -> bytes:
    metadata = {b"chroma.method": made.method.encode(), b"chroma.version": made.version.encode(),
                b"chroma.computed_at": made.computed_at.isoformat().encode()}
    table = made.table.replace_schema_metadata(metadata)
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema,
                      options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _decode(data: bytes) -> MapTable:
    table = ipc.open_file(pa.BufferReader(data)).read_all()
    meta = table.schema.metadata or {}
    return MapTable(
        version=meta[b"chroma.version"].decode(), method=meta[b"chroma.method"].decode(),
        computed_at=datetime.fromisoformat(meta[b"chroma.computed_at"].decode()),
        table=table.replace_schema_metadata(None),
    )


def _read(store: FileStore, key: str, version: str) -> MapTable | None:
    try:
        return _decode(store.read_bytes(map_path(key, version)))
    except NotFound:
        return None


def _versions(store: FileStore, key: str) -> list[str]:
    prefix = f"{key}/{MAP_DIR}/"
    names = [p[len(prefix):] for p in store.list_files(prefix) if p.startswith(prefix)]
    return [n[: -len(".arrow")] for n in names if n.endswith(".arrow")]


def _latest_of_seq(store: FileStore, key: str, seq: int) -> MapTable | None:
    """A stored map of the same records (same change seq), if any."""
    for version in _versions(store, key):
        if _seq_of(version) == seq:
            found = _read(store, key, version)
            if found is not None:
                return found
    return None


def _delete_older(store: FileStore, key: str, keep: str) -> None:
    for version in _versions(store, key):
        if map_path(key, version) != keep:
            store.delete(map_path(key, version))


# -- reading, for the API ------------------------------------------------------------------


class MapCache:
    """The last few maps read, by path: a map is immutable once written, and a browser
    polls it; re-reading and decoding a 1M-point file per request would dominate."""

    def __init__(self, store: FileStore, size: int = 2) -> None:
        self.store = store
        self.size = size
        self._lock = threading.Lock()
        self._maps: OrderedDict[str, MapTable] = OrderedDict()

    def get(self, key: str, version: str) -> MapTable | None:
        """The set's map at ``version``, or None if it was not computed (or was replaced)."""
        path = map_path(key, version)
        with self._lock:
            if path in self._maps:
                self._maps.move_to_end(path)
                return self._maps[path]
        found = _read(self.store, key, version)
        if found is None:
            return None
        with self._lock:
            self._maps[path] = found
            while len(self._maps) > self.size:
                self._maps.popitem(last=False)
        return found

    def newest(self, key: str) -> MapTable | None:
        """The newest map of the set the store holds, whatever its version (one listing)."""
        versions = sorted(_versions(self.store, key), key=_order, reverse=True)
        for version in versions:
            found = self.get(key, version)
            if found is not None:
                return found
        return None


def _order(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("-"))
