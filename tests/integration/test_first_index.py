"""A new embedding set is searchable before its graph exists, and nothing drops out of
search while the graph is built beside the live version and switched to.

Real parts, in-process: records committed to a real PostgreSQL and a local parquet
store, the ``index`` operation's handler run with an ``OperationContext`` whose progress
reports let the test look inside the run, the embedded Edge engine hosted here (as in
the indexer worker) and searched through ``open_reader``. Edge's indexing threshold is
lowered so that a few hundred 16-d points get a graph (the default would leave a shard
this small to exact scan, as it should).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import chroma.index.edge as edge_engine
from chroma.catalog import Catalog, Database, apply_migrations
from chroma.errors import NotFound
from chroma.index import IndexedRecord
from chroma.index.hosting import open_reader
from chroma.index.hosting.host import hosted_engine
from chroma.ingest import GroupCommitter
from chroma.ingest.validation import LogBatch
from chroma.keys import embedding_set_key
from chroma.operations import indexing
from chroma.operations.context import OperationContext
from chroma.operations.indexing import graph_build_running, run_index, wait_for_graph_build
from chroma.settings import Settings
from chroma.storage import RecordBatch, open_store

pytestmark = pytest.mark.integration

DIM = 16


class WatchedContext(OperationContext):
    """An operation context that calls ``watch(message)`` at every progress report."""

    watch: Callable[[str], None] = staticmethod(lambda message: None)

    def progress(self, fraction: float, message: str | None = None) -> None:
        super().progress(fraction, message)
        self.watch(message or "")


@dataclass
class Parts:
    settings: Settings
    catalog: Catalog
    committer: GroupCommitter
    es: dict[str, str]

    @property
    def key(self) -> str:
        return embedding_set_key(self.es)

    def log(self, ids: list[str], vectors: np.ndarray) -> None:
        n = len(ids)
        records = RecordBatch(
            ids=ids, embeddings=vectors.astype(np.float32), input_uris=[None] * n,
            inference_classes=[None] * n, label_classes=["c"] * n, scores_json=[None] * n,
            tags=[[] for _ in ids], metadata_json=[None] * n, dataset="d", split="training")
        self.committer.commit([LogBatch(self.es, self.key, "d", "training", records)])

    def index(self, watch: Callable[[str], None] = lambda message: None) -> dict:
        op, _ = self.catalog.operations.enqueue("index", self.key)
        ctx = WatchedContext(op, self.settings, self.catalog, self.catalog.operations,
                             open_store(self.settings))
        ctx.watch = watch  # type: ignore[method-assign]
        return run_index(ctx)["embedding_sets"][self.key]

    def nearest(self, vectors: np.ndarray) -> list[str]:
        """The top hit of each vector, through the reader every searcher uses."""
        hits = open_reader(self.settings).search(self.key, vectors, 1)
        return [row[0].record_id if row else "" for row in hits]


@pytest.fixture
def parts(own_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          ) -> Iterator[Parts]:
    monkeypatch.setattr(indexing, "_last_build", None)  # no rest after another test's build
    apply_migrations(own_database_url)
    settings = Settings(database_url=own_database_url, data_dir=tmp_path,
                        storage_url=str(tmp_path / "store"), index_exact_scan_max=50)
    db = Database(own_database_url)
    db.open()
    catalog = Catalog(db)
    committer = GroupCommitter(catalog, open_store(settings))
    yield Parts(settings, catalog, committer, {"model": "first-index",
                                               "run": os.urandom(4).hex()})
    assert wait_for_graph_build(120), "a background graph build outlived its test"
    db.close()


def spread(n: int, seed: int) -> np.ndarray:
    """Well separated vectors: each one's nearest record is itself."""
    return np.random.default_rng(seed).normal(size=(n, DIM)) * 10


def test_a_new_set_is_searchable_before_its_graph_and_nothing_drops_out_at_the_switch(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)  # graphs for tiny shards
    vectors = spread(600, seed=1)
    ids = [f"r{i}" for i in range(600)]
    parts.log(ids, vectors)
    engine = hosted_engine(parts.settings)
    fresh = IndexedRecord(dataset="d", record_id="fresh", split="production")
    fresh_vector = np.full((1, DIM), 40.0, dtype=np.float32)
    seen: list[str] = []

    def during_the_graph_build(message: str) -> None:
        if not message.startswith("building"):
            return
        seen.append(message)
        # The published version answers every record by exact scan, before any graph ...
        info = engine.collection_info(parts.key)
        fed = len(seen) > 1  # the fresh record, upserted at the first look
        assert (info.version, info.points, info.indexed_points) == (1, 600 + fed, 0)
        assert parts.nearest(vectors) == ids
        # ... the index state says so (``recommend`` and ``/status`` need not wait) ...
        state = parts.catalog.changes.index_state(parts.key)
        assert state is not None and state.indexed_count == 600
        assert state.indexed_seq == parts.catalog.changes.latest_seq(parts.key)
        # ... and takes a fresh commit's upsert (refused as "no index" before).
        if len(seen) == 1:
            assert engine.upsert(parts.key, [fresh], fresh_vector) == 1

    # A searcher through the whole operation, the switch included: a record it found once
    # (the published version fills page by page) must be found by every later search.
    misses: list[str] = []
    found: set[str] = set()
    searches = 0
    stop = threading.Event()

    def keep_searching() -> None:
        nonlocal searches
        sample = list(range(0, 600, 37))
        while not stop.is_set():
            try:
                got = parts.nearest(vectors[sample])
            except NotFound:  # the run has not published a version yet
                assert not found
                continue
            searches += 1
            for i, hit in zip(sample, got, strict=True):
                if hit == ids[i]:
                    found.add(hit)
                elif ids[i] in found:
                    misses.append(f"{ids[i]} dropped out (top hit {hit!r})")

    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    try:
        result = parts.index(during_the_graph_build)
    finally:
        stop.set()
        searcher.join()
    assert seen, "the run built no graph beside the published version"
    assert result["published_first"] and result["graph"] == "rebuilt"
    info = engine.collection_info(parts.key)
    assert info.version == 2 and info.points == 601 and info.indexed_points >= 600
    assert parts.nearest(vectors) == ids
    assert parts.nearest(fresh_vector) == ["fresh"]  # carried over to the new version
    assert searches > 0 and not misses, misses[:5]
    assert len(found) == len(range(0, 600, 37))


def test_a_set_too_small_for_a_graph_is_not_rebuilt_by_every_index_run(parts: Parts) -> None:
    """Edge leaves a shard under its indexing threshold to exact scan; counting its points
    as "outside the graph" made every index run over ``index_exact_scan_max`` rebuild it
    (three times in a row while records kept arriving: a 60 s run at 20k x 64)."""
    vectors = spread(400, seed=2)
    parts.log([f"r{i}" for i in range(400)], vectors)
    first = parts.index()
    assert first["version"] == 1 and first["graph"] == "unchanged"
    more = spread(100, seed=3)
    parts.log([f"m{i}" for i in range(100)], more)
    second = parts.index()
    assert second["graph"] == "unchanged" and second["version"] == 1
    assert second["upserted"] == 100 and second["points"] == 500
    assert parts.nearest(more) == [f"m{i}" for i in range(100)]


def test_a_bulk_loaded_new_set_is_filled_by_a_child_and_nothing_written_meanwhile_is_lost(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From ``CHILD_FILL_MIN`` records a new set's first fill is a graph-less version written
    by a child process, switched to after the rounds: a fresh upsert into the published
    (empty) version, a commit and a deletion made during the fill all end up in the index."""
    import chroma.operations.indexing as indexing

    monkeypatch.setattr(indexing, "CHILD_FILL_MIN", 500)
    monkeypatch.setattr(indexing, "PAGE", 200)  # several pages, and a second round
    vectors = spread(600, seed=4)
    ids = [f"r{i}" for i in range(600)]
    parts.log(ids, vectors)
    engine = hosted_engine(parts.settings)
    late = spread(300, seed=5)
    late_ids = [f"late{i}" for i in range(300)]
    fresh = IndexedRecord(dataset="d", record_id="fresh", split="production")
    fresh_vector = np.full((1, DIM), 40.0, dtype=np.float32)
    during: list[str] = []

    def during_the_fill(message: str) -> None:
        if not message.startswith("filling") or during:
            return
        during.append(message)
        # Published at once, empty: it takes a fresh commit's upsert ...
        assert engine.collection_info(parts.key).version == 1
        assert engine.upsert(parts.key, [fresh], fresh_vector) == 1
        # ... while more of the load arrives and a record already read is deleted.
        parts.log(late_ids, late)
        parts.catalog.delete_records("d", ["r0"])

    result = parts.index(during_the_fill)
    assert during, "the fill did not run as a child fill"
    assert result["published_first"] and result["version"] == 2
    assert result["upserted"] == 900 and result["deleted"] == 1
    info = engine.collection_info(parts.key)
    assert (info.version, info.points) == (2, 600 - 1 + 300 + 1)
    assert parts.nearest(vectors[1:]) == ids[1:]
    assert parts.nearest(late) == late_ids
    assert parts.nearest(fresh_vector) == ["fresh"]
    assert parts.nearest(vectors[:1]) != ["r0"]
    state = parts.catalog.changes.index_state(parts.key)
    assert state is not None and state.indexed_seq == parts.catalog.changes.latest_seq(parts.key)
    assert state.indexed_count == info.points
    assert list((parts.settings.data_dir / "index").glob("*/v000001")) == []  # empty v1 dropped


def test_a_load_that_grows_past_the_handover_while_filled_in_place_goes_to_a_child(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first run starting with the first commit of a bulk load fills it in place
    (searchable as it lands); when the next round finds ``CHILD_FILL_MIN`` more, the
    whole set is written by a child, and what was searchable stays so until the switch."""
    import chroma.operations.indexing as indexing

    monkeypatch.setattr(indexing, "CHILD_FILL_MIN", 500)
    monkeypatch.setattr(indexing, "PAGE", 100)
    first, rest = spread(300, seed=6), spread(600, seed=7)
    first_ids, rest_ids = [f"a{i}" for i in range(300)], [f"b{i}" for i in range(600)]
    parts.log(first_ids, first)
    seen: list[str] = []

    def watch(message: str) -> None:
        seen.append(message)
        if message.startswith("upserted") and len(seen) == 1:
            parts.log(rest_ids, rest)  # the rest of the load arrives meanwhile
        if message.startswith("filling"):  # the in-place part still answers
            assert parts.nearest(first) == first_ids

    result = parts.index(watch)
    assert any(m.startswith("upserted") for m in seen)
    assert any(m.startswith("filling") for m in seen)
    assert result["published_first"] and result["version"] == 2
    assert parts.nearest(first) == first_ids and parts.nearest(rest) == rest_ids
    assert hosted_engine(parts.settings).collection_info(parts.key).points == 900


def test_an_index_run_over_the_scan_limit_builds_the_graph_beside_the_live_version(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fewer new points than ``index_rebuild_ratio`` of the set but more than
    ``index_exact_scan_max``: the run has the graph built on a copy of the live version
    by a child, switches to it and drops the old version (in place, it held the index
    host's GIL while it built). The set's index state covers the run's changes before
    the build starts: ``/status`` and ``recommend`` need not wait for the graph."""
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)  # graphs for tiny shards
    vectors = spread(700, seed=5)
    ids = [f"r{i}" for i in range(700)]
    parts.log(ids[:600], vectors[:600])
    first = parts.index()
    assert first["graph"] == "rebuilt" and first["version"] == 2
    parts.log(ids[600:], vectors[600:])  # 100 > 50 new points, 100 / 700 < 0.3
    engine = hosted_engine(parts.settings)
    states: list[tuple[int, int]] = []

    def during_the_graph_build(message: str) -> None:
        if message.startswith("building the graph"):
            state = parts.catalog.changes.index_state(parts.key)
            assert state is not None
            states.append((state.indexed_seq, state.indexed_count))

    result = parts.index(during_the_graph_build)
    assert result["graph"] == "started"  # in the background: the run did not wait for it
    assert states == [(parts.catalog.changes.latest_seq(parts.key), 700)]
    assert wait_for_graph_build(120)
    info = engine.collection_info(parts.key)
    assert (info.version, info.points, info.indexed_points) == (3, 700, 700)
    assert parts.nearest(vectors) == ids
    index_dir = parts.settings.data_dir / "index" / parts.key
    assert sorted(p.name for p in index_dir.iterdir() if p.is_dir()) == ["v000003"]


def test_index_runs_go_on_applying_the_change_feed_while_the_graph_is_built(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The graph build (a child on a copy, 38-55 s at 1M under load) runs beside the
    index runs: the run that starts it returns, and the next one applies what was logged
    meanwhile to the live version (searchable, recorded in the set's index state) instead
    of waiting. Held here until released; the switch then keeps every record."""
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)  # graphs for tiny shards
    vectors = spread(730, seed=6)
    ids = [f"r{i}" for i in range(730)]
    parts.log(ids[:600], vectors[:600])
    assert parts.index()["graph"] == "rebuilt"
    real, release = edge_engine._optimize_in_child, threading.Event()

    def held(version_dir: Path) -> None:
        release.wait(30)  # the old code waited for this in the run: it ends unreleased
        real(version_dir)

    monkeypatch.setattr(edge_engine, "_optimize_in_child", held)
    parts.log(ids[600:700], vectors[600:700])  # 100 > 50 new points: a graph build
    try:
        started = parts.index()
        assert started["graph"] == "started" and graph_build_running() == parts.key
        parts.log(ids[700:], vectors[700:])
        during = parts.index()
        assert during["graph"] == "building" and during["upserted"] == 30
        assert graph_build_running() == parts.key and not release.is_set()
        state = parts.catalog.changes.index_state(parts.key)
        assert state is not None and state.indexed_seq == parts.catalog.changes.latest_seq(
            parts.key)
        engine = hosted_engine(parts.settings)
        assert engine.collection_info(parts.key).version == 2  # the live one took them
        assert parts.nearest(vectors) == ids
    finally:
        release.set()
    assert wait_for_graph_build(120)
    info = engine.collection_info(parts.key)
    assert (info.version, info.points) == (3, 730)  # the 30 replayed onto the copy
    assert parts.nearest(vectors) == ids
    index_dir = parts.settings.data_dir / "index" / parts.key
    assert sorted(p.name for p in index_dir.iterdir() if p.is_dir()) == ["v000003"]


def test_a_graph_build_waits_after_the_last_one_for_as_long_as_it_ran(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Builds take at most half of the time: a run over the scan limit that comes less
    than the last build's length after it ended starts none (``waiting``), a later one
    does. The live version answers every record meanwhile."""
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)  # graphs for tiny shards
    vectors = spread(700, seed=7)
    ids = [f"r{i}" for i in range(700)]
    parts.log(ids[:600], vectors[:600])
    assert parts.index()["graph"] == "rebuilt"
    parts.log(ids[600:], vectors[600:])  # 100 > 50 new points
    now = time.monotonic()
    monkeypatch.setattr(indexing, "_last_build", (now - 600.0, now - 1.0))  # 10 min long
    resting = parts.index()
    assert resting["graph"] == "waiting" and graph_build_running() is None
    assert parts.nearest(vectors) == ids
    monkeypatch.setattr(indexing, "_last_build", (now - 3.0, now - 2.0))  # 1 s, 2 s ago
    assert parts.index()["graph"] == "started"
    assert wait_for_graph_build(120)
    info = hosted_engine(parts.settings).collection_info(parts.key)
    assert (info.version, info.points, info.indexed_points) == (3, 700, 700)
