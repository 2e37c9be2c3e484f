"""Edge's ``optimize``: the graph is built by a child on a copy of the live version.

qdrant-edge-py 0.9 holds the GIL for a whole in-place ``optimize``, so every search and
fresh upsert of the index host waited for it (28-40 s at 200k under load). Now the live
version serves and takes writes while a child builds the graph on a copy; the writes are
journaled and replayed onto it before the switch. These tests stop the child (SIGSTOP)
to show that searches and writes do not wait for it, and kill it to show a failed build
leaves the live version alone.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as edge
from children import hnsw_builders
from index_data import gaussian_mixture, make_records

import chroma.index.edge as edge_engine
from chroma.errors import Unavailable
from chroma.index import IndexConfig, IndexedRecord, open_query_engine
from chroma.index._tree_copy import sync_tree
from chroma.index.base import QueryEngine, SearchFilter

pytestmark = pytest.mark.integration

KEY = "graph-child"
DIM = 16


def _while_the_child_is_stopped(
    monkeypatch: pytest.MonkeyPatch, action: Callable[[], None], *, kill: bool = False
) -> list[bool]:
    """Have ``optimize``'s child stopped (SIGSTOP) while ``action`` runs in this thread,
    then resumed (or killed); the list says whether the child was there to stop."""
    real = edge_engine._optimize_in_child
    stopped: list[bool] = []

    def stopping(version_dir: Path) -> None:
        failure: list[BaseException] = []

        def run() -> None:
            try:
                real(version_dir)
            except BaseException as exc:  # handed to the caller below
                failure.append(exc)

        runner = threading.Thread(target=run)
        runner.start()
        deadline = time.monotonic() + 60
        while not (children := hnsw_builders()) and runner.is_alive():
            assert time.monotonic() < deadline, "no graph child started"
            time.sleep(0.005)
        for pid in children:
            os.kill(pid, signal.SIGSTOP)
        stopped.append(bool(children))
        try:
            action()  # answered by the live version while the child cannot run
        finally:
            for pid in children:
                os.kill(pid, signal.SIGKILL if kill else signal.SIGCONT)
            runner.join()
        if failure:
            raise failure[0]

    monkeypatch.setattr(edge_engine, "_optimize_in_child", stopping)
    return stopped


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[QueryEngine]:
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)  # graphs for tiny shards
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as opened:
        yield opened


def _graphed_then_grown(engine: QueryEngine) -> tuple[list[IndexedRecord], np.ndarray]:
    """3,000 records: 2,000 in a graph (v1), 1,000 upserted after it (exactly scanned)."""
    records = make_records(3_000, seed=31)
    vectors = gaussian_mixture(3_000, DIM, seed=31)
    engine.reindex(KEY, DIM, "cosine", [(records[:2_000], vectors[:2_000])])
    engine.upsert(KEY, records[2_000:], vectors[2_000:])
    info = engine.collection_info(KEY)
    assert (info.version, info.points) == (1, 3_000) and info.indexed_points < 3_000
    return records, vectors


def _top(engine: QueryEngine, vectors: np.ndarray) -> list[str]:
    return [row[0].record_id if row else "" for row in engine.search(KEY, vectors, 1)]


def test_searches_and_writes_go_on_while_the_child_builds_and_all_are_right_after_the_switch(
    engine: QueryEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, vectors = _graphed_then_grown(engine)
    fresh = IndexedRecord(dataset="prod", record_id="fresh", split="production")
    fresh_vector = np.full((1, DIM), 9.0, dtype=np.float32)
    moved_vector = np.full((1, DIM), -9.0, dtype=np.float32)
    deleted = [records[5], records[2_500]]  # one in the graph, one outside it
    retagged = records[10]
    moved = records[2_600]  # re-logged with another vector

    def during() -> None:
        assert _top(engine, vectors[:50]) == [r.record_id for r in records[:50]]
        engine.upsert(KEY, [fresh], fresh_vector)
        engine.delete(KEY, [(r.dataset, r.record_id) for r in deleted])
        engine.set_payload(KEY, [(retagged.dataset, retagged.record_id)], {"tags": ["moved"]})
        engine.upsert(KEY, [moved], moved_vector)
        assert _top(engine, fresh_vector) == ["fresh"]  # the live version took them
        assert engine.collection_info(KEY).version == 1

    stopped = _while_the_child_is_stopped(monkeypatch, during)
    engine.optimize(KEY)
    assert stopped == [True]
    info = engine.collection_info(KEY)
    assert (info.version, info.points, info.indexed_points) == (2, 3_000 - 2 + 1, 2_999)
    kept = [i for i, r in enumerate(records) if r not in deleted and r is not moved]
    assert _top(engine, vectors[kept]) == [records[i].record_id for i in kept]
    assert _top(engine, fresh_vector) == ["fresh"]
    assert _top(engine, moved_vector) == [moved.record_id]
    for record in deleted:  # not back from the copy
        with pytest.raises(Exception, match="not in index"):
            engine.get_vector(KEY, (record.dataset, record.record_id))
    tagged = engine.search(KEY, vectors[10], 5, SearchFilter(tags_any=("moved",)))[0]
    assert [n.record_id for n in tagged] == [retagged.record_id]
    assert not engine._journals  # type: ignore[attr-defined]
    assert engine.drop_old_versions(KEY) == [1]
    assert sorted(p.name for p in (engine._root / KEY).iterdir()  # type: ignore[attr-defined]
                  if p.is_dir()) == ["v000002"]


def test_a_killed_child_leaves_the_live_version_serving_with_its_writes_and_nothing_behind(
    engine: QueryEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, vectors = _graphed_then_grown(engine)
    fresh = IndexedRecord(dataset="prod", record_id="fresh", split="production")
    fresh_vector = np.full((1, DIM), 9.0, dtype=np.float32)

    def during() -> None:
        engine.upsert(KEY, [fresh], fresh_vector)
        engine.delete(KEY, [(records[7].dataset, records[7].record_id)])

    stopped = _while_the_child_is_stopped(monkeypatch, during, kill=True)
    with pytest.raises(Unavailable, match="building the graph"):
        engine.optimize(KEY)
    assert stopped == [True] and hnsw_builders() == []
    info = engine.collection_info(KEY)
    assert (info.version, info.points) == (1, 3_000)
    assert _top(engine, fresh_vector) == ["fresh"]
    assert records[7].record_id not in _top(engine, vectors[7:8])
    assert sorted(p.name for p in (engine._root / KEY).iterdir()  # type: ignore[attr-defined]
                  if p.is_dir()) == ["v000001"]
    assert not engine._journals  # type: ignore[attr-defined]
    engine.upsert(KEY, [records[0]], vectors[:1])  # writes go on without a journal
    monkeypatch.undo()
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)
    engine.optimize(KEY)  # and a later optimize succeeds
    info = engine.collection_info(KEY)
    assert (info.version, info.points, info.indexed_points) == (2, 3_000, 3_000)


def test_a_graphed_shard_is_not_copied(engine: QueryEngine) -> None:
    records = make_records(500, seed=32)
    engine.reindex(KEY, DIM, "cosine", [(records, gaussian_mixture(500, DIM, seed=32))])
    engine.optimize(KEY)
    assert engine.collection_info(KEY).version == 1
    assert sorted(p.name for p in (engine._root / KEY).iterdir()  # type: ignore[attr-defined]
                  if p.is_dir()) == ["v000001"]


def _points(shard: edge.EdgeShard) -> dict[object, tuple[list[float], dict]]:
    found: dict[object, tuple[list[float], dict]] = {}
    offset = None
    while True:
        page, offset = shard.scroll(edge.ScrollRequest(limit=1_000, offset=offset,
                                                       with_payload=True, with_vector=True))
        for point in page:
            found[point.id] = (point.vector, point.payload)
        if offset is None:
            return found


def test_the_two_pass_copy_of_a_live_shard_holds_what_was_written_between_the_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second pass (writes held) copies only files written since the first pass's
    flush: what was upserted, deleted from a sealed segment or retagged between the two
    is in the copy exactly as in the live shard."""
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)
    engine = edge_engine.EdgeQueryEngine(IndexConfig(backend="edge", path=tmp_path / "e"))
    records = make_records(3_000, seed=33)
    vectors = gaussian_mixture(3_000, DIM, seed=33)
    try:
        engine.reindex(KEY, DIM, "cosine", [(records[:2_000], vectors[:2_000])])  # sealed
        engine.upsert(KEY, records[2_000:2_500], vectors[2_000:2_500])
        live = engine._live[KEY]
        source = tmp_path / "e" / KEY / "v000001"
        copy = tmp_path / "copy"
        live.shard.flush()
        began = time.time()
        sync_tree(source, copy, since=None)
        time.sleep(0.05)
        engine.upsert(KEY, records[2_500:], vectors[2_500:])
        engine.delete(KEY, [(r.dataset, r.record_id) for r in records[:300:3]])
        engine.set_payload(KEY, [(records[400].dataset, records[400].record_id)],
                           {"tags": ["between"]})
        engine.upsert(KEY, records[500:510], vectors[510:520])  # sealed points moved
        live.shard.flush()
        again = sync_tree(source, copy, since=began - edge_engine.MTIME_SLACK_S)
        assert 0 < again < sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
        expected = _points(live.shard)
        copied = edge.EdgeShard.load(str(copy))
        try:
            assert _points(copied) == expected
        finally:
            copied.close()
        assert len(expected) == 3_000 - 100
    finally:
        engine.close()


def test_a_copier_that_dies_fails_the_build_and_leaves_the_live_version_serving(
    engine: QueryEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live version's files are copied by a child (``_tree_copy``): one killed in the
    middle of the copy fails ``optimize`` with ``Unavailable``, leaves no copy and no
    journal behind, and the live version keeps its points and writes."""
    records, vectors = _graphed_then_grown(engine)
    real_sync = edge_engine._TreeCopier.sync
    rounds: list[int] = []

    def dying(self: edge_engine._TreeCopier, since: float | None) -> int:
        rounds.append(1)
        if len(rounds) == 2:  # the second round: the copier is gone
            self._child.kill()
            self._child.wait()
        return real_sync(self, since)

    monkeypatch.setattr(edge_engine._TreeCopier, "sync", dying)
    with pytest.raises(Unavailable, match="copying an index version failed"):
        engine.optimize(KEY)
    assert len(rounds) == 2
    assert sorted(p.name for p in (engine._root / KEY).iterdir()  # type: ignore[attr-defined]
                  if p.is_dir()) == ["v000001"]
    assert not engine._journals  # type: ignore[attr-defined]
    info = engine.collection_info(KEY)
    assert (info.version, info.points) == (1, 3_000)
    assert _top(engine, vectors[:50]) == [r.record_id for r in records[:50]]
    monkeypatch.setattr(edge_engine._TreeCopier, "sync", real_sync)
    engine.optimize(KEY)  # and the next one builds the graph
    info = engine.collection_info(KEY)
    assert (info.version, info.points, info.indexed_points) == (2, 3_000, 3_000)
