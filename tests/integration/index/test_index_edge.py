"""Qdrant Edge specifics: HNSW recall with the shipped parameters, sharing a directory,
writes carried across a rebuild.

The remote backend's graph lives in the server; its local-mode stand-in is brute force,
so recall is measured here on Edge only.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from children import hnsw_builders
from conftest import record_search_efs
from index_data import gaussian_mixture, make_records

import chroma.index.edge as edge_engine
from chroma.errors import InvalidInput, Unavailable
from chroma.index import IndexConfig, IndexedRecord, open_query_engine
from chroma.index.base import SearchFilter

pytestmark = pytest.mark.integration

KEY = "edge-specific"


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ normed.T
    return np.argsort(-scores, axis=1)[:, :k]


def recall_at_k(found: list[list[str]], truth: np.ndarray, records: list[IndexedRecord]) -> float:
    hits = sum(
        len({row for row in ids} & {records[j].record_id for j in expected})
        for ids, expected in zip(found, truth, strict=True)
    )
    return hits / truth.size


@pytest.mark.slow
def test_recall_at_10_on_clustered_100k_x_128_with_shipped_hnsw_parameters(
    tmp_path: Path,
) -> None:
    n, new, dimension, k = 100_000, 25_000, 128, 10  # 25k x 128 > the 10 MB indexing threshold
    vectors = gaussian_mixture(n + new, dimension, seed=42, clusters=100, spread=0.35)
    records = [
        IndexedRecord(dataset="train", record_id=f"r{i}", split="training") for i in range(n + new)
    ]
    queries = gaussian_mixture(200, dimension, seed=42, clusters=100, spread=0.35)[:200] + (
        np.random.default_rng(7).normal(scale=0.1, size=(200, dimension)).astype(np.float32)
    )
    config = IndexConfig(backend="edge", path=tmp_path)  # shipped defaults otherwise
    with open_query_engine(config) as engine:
        batches = [(records[i : i + 10_000], vectors[i : i + 10_000]) for i in range(0, n, 10_000)]
        info = engine.reindex(KEY, dimension, "cosine", batches)
        assert info.points == n
        assert info.indexed_points == n, "the graph was not built: recall would be exact"
        found = [[h.record_id for h in hits] for hits in engine.search(KEY, queries, k)]
        recall = recall_at_k(found, exact_top_k(vectors[:n], queries, k), records)
        assert recall >= 0.95, f"recall@10 = {recall:.3f}"

        # Incremental: new points are searchable at once, and in the graph after optimize.
        engine.upsert(KEY, records[n:], vectors[n:])
        engine.optimize(KEY)
        info = engine.collection_info(KEY)
        assert (info.points, info.indexed_points) == (n + new, n + new)
        found = [[h.record_id for h in hits] for hits in engine.search(KEY, queries, k)]
        recall = recall_at_k(found, exact_top_k(vectors, queries, k), records)
        assert recall >= 0.95, f"recall@10 after incremental upsert = {recall:.3f}"


def test_engine_adopts_a_version_built_by_another_engine_once_it_is_released(
    tmp_path: Path,
) -> None:
    """Two engines on one directory stand for two processes (Edge locks per open shard)."""
    records = make_records(400, seed=1)
    vectors = gaussian_mixture(400, 16, seed=1)
    config = IndexConfig(backend="edge", path=tmp_path)
    serving = open_query_engine(config)
    serving.ensure_collection(KEY, 16)
    serving.upsert(KEY, records[:200], vectors[:200])

    builder = open_query_engine(config)
    with pytest.raises(Unavailable, match="another process"):
        builder.upsert(KEY, records[:1], vectors[:1])  # the live shard is serving's
    assert builder.reindex(KEY, 16, "cosine", [(records, vectors)]).version == 2

    # The builder still holds version 2: serving keeps answering from version 1.
    assert serving.collection_info(KEY).version == 1
    assert serving.count(KEY) == 200
    builder.close()
    info = serving.collection_info(KEY)
    assert (info.version, info.points) == (2, 400)
    assert len(serving.search(KEY, vectors[0], 5)[0]) == 5
    assert serving.drop_old_versions(KEY) == [1]
    assert sorted(p.name for p in (tmp_path / KEY).iterdir() if p.is_dir()) == ["v000002"]
    serving.close()


def test_writes_made_while_a_reindex_builds_are_carried_over_at_the_switch(
    tmp_path: Path,
) -> None:
    """A record written to the live version during a rebuild (a fresh commit's upsert)
    is in the new version the moment it goes live, and a delete made meanwhile too."""
    dimension = 16
    vectors = gaussian_mixture(300, dimension, seed=5, clusters=4, spread=0.5)
    records = [IndexedRecord(dataset="d", record_id=f"r{i}", split="production")
               for i in range(300)]
    fresh = IndexedRecord(dataset="d", record_id="fresh", split="production")
    fresh_vector = np.full((1, dimension), 9.0, dtype=np.float32)
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        engine.reindex(KEY, dimension, "cosine", [(records[:200], vectors[:200])])

        def batches():  # the rebuild reads its snapshot; meanwhile the live index is written
            yield records[:100], vectors[:100]
            engine.upsert(KEY, [fresh], fresh_vector)
            engine.delete(KEY, [("d", "r5")])
            assert engine.search(KEY, fresh_vector, 1)[0][0].record_id == "fresh"
            yield records[100:200], vectors[100:200]

        info = engine.reindex(KEY, dimension, "cosine", batches())
        assert info.version == 2 and info.points == 200  # 200 - r5 + fresh
        assert engine.search(KEY, fresh_vector, 1)[0][0].record_id == "fresh"
        assert "r5" not in {n.record_id for n in engine.search(KEY, vectors[5], 10)[0]}
        engine.upsert(KEY, [records[250]], vectors[250:251])  # no rebuild: no journal kept
        assert not engine._journals


def test_a_live_write_during_the_journal_replay_is_taken_at_once_and_carried_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writes journaled during a rebuild are replayed onto the new version without
    the journal lock (only the last few and the switch hold it), so a fresh commit's
    upsert is not held back by a long replay, and it is in the new version too."""
    dimension = 16
    vectors = gaussian_mixture(130, dimension, seed=6, clusters=4, spread=0.5)
    records = [IndexedRecord(dataset="d", record_id=f"r{i}", split="production")
               for i in range(130)]
    late = IndexedRecord(dataset="d", record_id="late", split="production")
    late_vector = np.full((1, dimension), 9.0, dtype=np.float32)
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        engine.reindex(KEY, dimension, "cosine", [(records[:100], vectors[:100])])

        def batches():
            yield records[:100], vectors[:100]
            for i in range(100, 130):  # journaled: more entries than replayed under the lock
                engine.upsert(KEY, [records[i]], vectors[i:i + 1])

        apply = engine._apply
        writer_stuck: list[bool] = []

        def apply_beside_a_live_write(shard, key, write):  # type: ignore[no-untyped-def]
            if shard.version == 2 and not writer_stuck:  # the replay's first entry
                writer = threading.Thread(target=engine.upsert, args=(KEY, [late], late_vector))
                writer.start()
                writer.join(60)  # not a speed limit: only a lock held here would block it
                writer_stuck.append(writer.is_alive())
            return apply(shard, key, write)

        monkeypatch.setattr(engine, "_apply", apply_beside_a_live_write)
        info = engine.reindex(KEY, dimension, "cosine", batches())
        assert writer_stuck == [False]
        assert info.version == 2 and info.points == 131
        assert engine.search(KEY, late_vector, 1)[0][0].record_id == "late"
        for i in (100, 129):
            assert engine.search(KEY, vectors[i], 1)[0][0].record_id == f"r{i}"


def _wal_resident_kib(root: Path) -> int:
    """This process' RSS of the write-ahead-log files it maps under ``root``."""
    total, wal = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split(None, 5)
        if len(fields) >= 5 and "-" in fields[0] and not fields[0].endswith(":"):
            path = fields[5].strip() if len(fields) > 5 else ""
            wal = path.startswith(str(root)) and "/wal/" in path
        elif wal and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_release_unused_reclaims_the_written_wal_and_nothing_is_lost(tmp_path: Path) -> None:
    """The WAL of the open version stays mapped and resident after its writes (~44 MiB
    of RSS after 100k x 128); ``release_unused`` drops those pages from the process,
    and the points stay searchable, writable and durable across a reopen."""
    from chroma.memory import release_unused

    n, dimension = 20_000, 64
    records = make_records(n, seed=3)
    vectors = gaussian_mixture(n, dimension, seed=3)
    config = IndexConfig(backend="edge", path=tmp_path)
    with open_query_engine(config) as engine:
        engine.ensure_collection(KEY, dimension)
        engine.upsert(KEY, records[: n - 100], vectors[: n - 100])
        engine.optimize(KEY)
        before = _wal_resident_kib(tmp_path)
        assert before > 4 * 1024, f"only {before} KiB of WAL resident: nothing to show"
        release_unused()
        after = _wal_resident_kib(tmp_path)
        assert after < before / 4, (before, after)
        engine.upsert(KEY, records[n - 100 :], vectors[n - 100 :])  # the WAL takes writes
        hits = engine.search(KEY, vectors[n - 1], 1)[0]
        assert hits[0].record_id == records[n - 1].record_id
    with open_query_engine(config) as engine:  # recovery reads the WAL back from disk
        assert engine.count(KEY) == n
        hits = engine.search(KEY, vectors[5], 1)[0]
        assert hits[0].record_id == records[5].record_id


@pytest.mark.parametrize("failure", ["bad batch", "interrupted"])
def test_a_build_that_fails_midway_leaves_the_live_version_alone_and_nothing_behind(
    tmp_path: Path, failure: str
) -> None:
    """The child writing a new version is stopped and its directory removed when a later
    batch is bad (refused with the same error as before, not the child's) or the build is
    interrupted; the live version answers as before."""
    dimension = 8
    vectors = gaussian_mixture(200, dimension, seed=7, clusters=4)
    records = make_records(200, seed=7)
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        engine.reindex(KEY, dimension, "cosine", [(records[:100], vectors[:100])])

        def batches():
            yield records[100:150], vectors[100:150]
            assert hnsw_builders(), "the points are not written by a child"
            if failure == "interrupted":
                raise RuntimeError("interrupted")
            yield records[150:], vectors[150:, :4]  # the wrong dimension

        expected = RuntimeError if failure == "interrupted" else InvalidInput
        with pytest.raises(expected):
            engine.reindex(KEY, dimension, "cosine", batches())
        assert hnsw_builders() == []
        assert sorted(p.name for p in (tmp_path / KEY).iterdir() if p.is_dir()) == ["v000001"]
        info = engine.collection_info(KEY)
        assert (info.version, info.points) == (1, 100)
        assert engine.search(KEY, vectors[:1], 1)[0][0].record_id == records[0].record_id


def test_a_graph_less_build_is_live_at_once_and_counted_outside_the_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``graph=False`` (a new set's first fill): every point searchable by exact scan, none
    in a graph, so the next ``index`` run knows a build is due; a build then graphs them."""
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)  # graphs for tiny shards
    dimension = 16
    vectors = gaussian_mixture(2_000, dimension, seed=8, clusters=8)
    records = make_records(2_000, seed=8)
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        info = engine.reindex(KEY, dimension, "cosine", [(records, vectors)], graph=False)
        assert (info.points, info.indexed_points) == (2_000, 0)
        top = engine.search(KEY, vectors[:50], 1)
        assert [row[0].record_id for row in top] == [r.record_id for r in records[:50]]
        assert engine.search(KEY, vectors[:1], 1)[0][0] == top[0][0]  # payload kept whole
        info = engine.reindex(KEY, dimension, "cosine", [(records, vectors)])
        assert info.points == 2_000 and info.indexed_points > 0


def test_collection_info_counts_what_an_exact_count_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``collection_info`` reads the shard's own tally instead of counting every point;
    through every kind of write (over a built graph and over fresh points, deletes,
    re-adds, a graph build, a reopen replaying the journal) it equals an exact count."""
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)  # graphs for tiny shards
    dimension, n = 16, 4_000
    vectors = gaussian_mixture(n, dimension, seed=21, clusters=8)
    records = make_records(n, seed=21)

    def gone(part: list[IndexedRecord]) -> list[tuple[str, str]]:
        return [(r.dataset, r.record_id) for r in part]

    steps = [
        ("re-log over the graph", lambda e: e.upsert(KEY, records[:300], vectors[:300])),
        ("new points", lambda e: e.upsert(KEY, records[3_000:3_500], vectors[3_000:3_500])),
        ("delete from the graph", lambda e: e.delete(KEY, gone(records[300:600]))),
        ("delete fresh points", lambda e: e.delete(KEY, gone(records[3_000:3_200]))),
        ("re-add deleted and more", lambda e: e.upsert(KEY, records[450:900], vectors[450:900])),
        ("graph build", lambda e: e.optimize(KEY)),
        ("re-log after the build", lambda e: e.upsert(KEY, records[:1_000], vectors[:1_000])),
    ]
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        engine.reindex(KEY, dimension, "cosine", [(records[:3_000], vectors[:3_000])])
        for step, write in steps:
            write(engine)
            assert engine.collection_info(KEY).points == _exact_count(engine), step
        expected = engine.collection_info(KEY).points
    assert expected == 3_300  # 3,000 built + 500 new - 500 deleted + 300 re-added
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        assert engine.collection_info(KEY).points == _exact_count(engine) == expected


def _exact_count(engine: edge_engine.EdgeQueryEngine) -> int:
    with engine._lease(KEY) as shard:
        return int(shard.shard.count(edge_engine.edge.CountRequest(exact=True)))


def _written_points(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record ids every Edge point write of this test passes to the shard."""
    written: list[str] = []
    real = edge_engine.upsert_points

    def counting(shard, records, matrix, batch_size):  # type: ignore[no-untyped-def]
        written.extend(r.record_id for r in records)
        return real(shard, records, matrix, batch_size)

    monkeypatch.setattr(edge_engine, "upsert_points", counting)
    return written


def _located(records: list[IndexedRecord], path: str) -> list[IndexedRecord]:
    """``records`` as written to row i of the store's file ``path`` (as the commit path
    and the catalog name them)."""
    return [dataclasses.replace(r, file_path=path, row_index=i) for i, r in enumerate(records)]


def test_an_index_run_does_not_write_again_what_came_fresh_and_writes_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = _located(make_records(300, seed=3), "part-1.parquet")
    vectors = gaussian_mixture(300, 16, seed=3)
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        engine.ensure_collection(KEY, 16)
        engine.upsert(KEY, records[:200], vectors[:200])  # fresh from their commits
        written = _written_points(monkeypatch)
        # The index run's page: 150 fresh ones as they are, 20 of them re-tagged, 10
        # re-logged (another vector, in another file), and 100 the index never saw.
        page = list(records[:200])
        page_vectors = vectors[:300].copy()
        for i in range(150, 170):
            page[i] = dataclasses.replace(page[i], tags=("changed",))
        page_vectors[170:180] = gaussian_mixture(10, 16, seed=99)
        for i in range(170, 180):
            page[i] = dataclasses.replace(page[i], file_path="part-2.parquet", row_index=i)
        page += records[200:]
        assert engine.not_fresh(KEY, page[:10]) == []  # asked before reading vectors
        assert engine.not_fresh(KEY, page[:10]) == list(range(10))  # used up
        assert engine.upsert_changed(KEY, page, page_vectors) == 140
        expected = [r.record_id for r in page[:10] + page[150:180] + page[200:]]
        assert sorted(written) == sorted(expected)
        assert engine.count(KEY) == 300
        hits = engine.search(KEY, page_vectors[[160, 175, 250]], k=1)
        assert [h[0].record_id for h in hits] == [page[160].record_id, page[175].record_id,
                                                  page[250].record_id]
        assert hits[0][0].payload["tags"] == ["changed"]
        # Used up: a second run writes everything again (the engine forgets what it met).
        written.clear()
        engine.upsert_changed(KEY, page, page_vectors)
        assert len(written) == 300


def test_a_fresh_record_deleted_or_retagged_is_written_again_by_the_index_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = _located(make_records(50, seed=4), "part-1.parquet")
    vectors = gaussian_mixture(50, 16, seed=4)
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        engine.ensure_collection(KEY, 16)
        engine.upsert(KEY, records, vectors)
        engine.delete(KEY, [(r.dataset, r.record_id) for r in records[:10]])
        engine.set_payload(KEY, [(r.dataset, r.record_id) for r in records[10:20]],
                           {"tags": ["x"]})
        written = _written_points(monkeypatch)
        # A page that (by a race) still names them as first logged: they must be written.
        engine.upsert_changed(KEY, records[:20], vectors[:20])
        assert sorted(written) == sorted(r.record_id for r in records[:20])
        assert engine.count(KEY) == 50


def test_fresh_records_are_not_taken_for_written_in_a_version_switched_to_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = _located(make_records(60, seed=5), "part-1.parquet")
    vectors = gaussian_mixture(60, 16, seed=5)
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        engine.ensure_collection(KEY, 16)
        engine.upsert(KEY, records[:30], vectors[:30])
        # A rebuild from a snapshot taken before those commits: the new version lacks them.
        engine.reindex(KEY, 16, "cosine", [(records[30:], vectors[30:])])
        engine.drop_old_versions(KEY)
        written = _written_points(monkeypatch)
        engine.upsert_changed(KEY, records[:30], vectors[:30])  # the catch-up
        assert sorted(written) == sorted(r.record_id for r in records[:30])
        assert engine.count(KEY) == 60


def test_fresh_records_without_their_stored_place_or_twice_in_an_upsert_are_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a record whose file and row are known is taken for held: without them (or
    replaced in its group commit: row -1), or an id twice in one upsert (which vector
    the shard kept is Edge's to say), the index run reads and writes it."""
    records = _located(make_records(40, seed=8), "part-1.parquet")
    vectors = gaussian_mixture(40, 16, seed=8)
    fed = ([dataclasses.replace(r, file_path=None) for r in records[:10]]
           + [dataclasses.replace(r, row_index=-1) for r in records[10:20]]
           + records[20:30] + records[20:30] + records[30:])
    fed_vectors = np.concatenate([vectors[:30], vectors[20:30], vectors[30:]])
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        engine.ensure_collection(KEY, 16)
        engine.upsert(KEY, fed, fed_vectors)
        assert engine.not_fresh(KEY, records) == list(range(30))


@pytest.mark.parametrize("shared", [True, False], ids=["grouped", "varied"])
def test_a_child_written_version_stores_each_point_s_whole_payload(
    tmp_path: Path, shared: bool,
) -> None:
    """The child sets the fields a batch shares per group (``upsert_points_grouped``):
    every point must end up with exactly the payload a plain upsert stores, filters on
    the shared fields must see them, and a batch of all-different payloads works too."""
    n = 2_500
    records = make_records(n, seed=6)
    if shared:  # a bulk load: one commit's logged_at, a few classes (24 groups at most)
        records = [IndexedRecord(r.dataset, r.record_id, r.split, input_uri=r.input_uri,
                                 inference_class=r.inference_class,
                                 tags=("night",) if "night" in r.tags else (),
                                 logged_at=1_790_000_000.25) for r in records]
    vectors = gaussian_mixture(n, 16, seed=6)
    updates = _updates_of_a_grouped_write(tmp_path / "probe", records[:1_000], vectors[:1_000])
    assert (updates > 1) == shared  # grouped: one upsert and a set_payload per group
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path / "index")) as engine:
        engine.reindex(KEY, 16, "cosine", [(records[:1_200], vectors[:1_200]),
                                            (records[1_200:], vectors[1_200:])], graph=False)
        version = engine.collection_info(KEY).version
        shard = engine._live[KEY].shard
        stored = {str(r.id): r.payload for r in shard.retrieve(
            [edge_engine.point_id(r.dataset, r.record_id) for r in records], True, False)}
        assert len(stored) == n
        for record in records:
            pid = edge_engine.point_id(record.dataset, record.record_id)
            assert stored[pid] == record.stored_payload(), record
        cls = next(r.inference_class for r in records if r.inference_class)
        for search_filter, expected in [
            (SearchFilter(inference_classes=(cls,)), sum(r.inference_class == cls
                                                          for r in records)),
            (SearchFilter(datasets=("prod",)), sum(r.dataset == "prod" for r in records)),
            (SearchFilter(tags_any=("night",)), sum("night" in r.tags for r in records)),
        ]:
            assert 0 < expected < n
            assert engine.count(KEY, search_filter) == expected, search_filter
        assert engine.collection_info(KEY).version == version


def _updates_of_a_grouped_write(path: Path, records: list[IndexedRecord],
                                vectors: np.ndarray) -> int:
    """How many shard updates ``upsert_points_grouped`` makes for one batch."""
    import qdrant_edge as edge

    shard = edge.EdgeShard.create(str(path), edge.EdgeConfig(
        vectors=edge.EdgeVectorParams(size=vectors.shape[1], distance=edge.Distance.Cosine)))
    calls = [0]

    class Counting:
        def update(self, operation: object) -> None:
            calls[0] += 1
            shard.update(operation)

    try:
        edge_engine.upsert_points_grouped(Counting(), records, vectors,  # type: ignore[arg-type]
                                          len(records))
    finally:
        shard.close()
    return calls[0]


def test_a_graph_less_fill_answers_what_it_has_read_before_its_switch(tmp_path: Path) -> None:
    """A new set's bulk fill (``reindex(graph=False)`` beside a published version): each
    batch is searchable once the build has read it, deletes meanwhile are not answered,
    filters hold, and after the switch the version itself answers."""
    records = make_records(3_000, seed=8)
    vectors = gaussian_mixture(3_000, 16, seed=8)
    seen: list[list[str]] = []
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        engine.ensure_collection(KEY, 16)  # published, empty

        def batches():  # type: ignore[no-untyped-def]
            yield records[:1_000], vectors[:1_000]
            # The child has the first batch; the live version has nothing.
            assert engine.count(KEY) == 0
            seen.append([h[0].record_id for h in engine.search(KEY, vectors[[5, 700]], k=1)])
            engine.delete(KEY, [(records[5].dataset, records[5].record_id)])
            seen.append([h.record_id for h in engine.search(KEY, vectors[5], k=3)[0]])
            only = SearchFilter(split="production")
            seen.append([h.split for h in engine.search(KEY, vectors[:50], k=5, filter=only)[0]])
            yield records[1_000:], vectors[1_000:]

        engine.reindex(KEY, 16, "cosine", batches(), graph=False)
        assert seen[0] == [records[5].record_id, records[700].record_id]
        assert records[5].record_id not in seen[1]
        assert seen[2] and set(seen[2]) == {"production"}
        assert not engine._fill_scans
        assert engine.search(KEY, vectors[2_500], k=1)[0][0].record_id == records[2_500].record_id


def test_a_search_takes_its_own_hnsw_ef(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``hnsw_ef`` per search reaches the graph walk: the configured value answers as
    no value does, a candidate list of only ``k`` finds fewer true neighbours, and a
    value out of range is refused."""
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)  # a graph for a small set
    n, dimension, k = 6_000, 32, 10
    vectors = gaussian_mixture(n, dimension, seed=11, clusters=20, spread=2.0)
    records = make_records(n, seed=11)
    queries = gaussian_mixture(200, dimension, seed=12, clusters=20, spread=2.0)
    truth = exact_top_k(vectors, queries, k)
    # A set this small is scanned exactly unless the full-scan threshold is lowered too.
    config = IndexConfig(backend="edge", path=tmp_path, full_scan_threshold_kb=1)
    with open_query_engine(config) as engine:
        info = engine.reindex(KEY, dimension, "cosine", [(records, vectors)])
        assert info.indexed_points == n, "no graph: every ef would scan exactly"

        def recall(hnsw_ef: int | None) -> float:
            rows = engine.search_stored(KEY, queries, k, hnsw_ef=hnsw_ef)
            return recall_at_k([[p["record_id"] for _, p in row] for row in rows], truth,
                               records)

        configured = engine.search(KEY, queries, k)
        assert engine.search(KEY, queries, k, hnsw_ef=128) == configured  # the default
        assert recall(k) < recall(None)
        for wrong in (0, 1_025):
            with pytest.raises(InvalidInput, match="hnsw_ef"):
                engine.search(KEY, queries[:1], k, hnsw_ef=wrong)


def test_the_default_hnsw_ef_follows_the_graph_s_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without an asked ``hnsw_ef`` the search's candidate list grows with the points the
    shard holds (``base.scaled_ef``), as a fixed one lost recall at 1M; an asked one is
    used as it is."""
    from chroma.index import base

    used = record_search_efs(monkeypatch, edge_engine)
    records = make_records(1_000, seed=8)
    vectors = gaussian_mixture(1_000, 16, seed=8)
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        engine.reindex(KEY, 16, "cosine", [(records, vectors)])
        hits = engine.search(KEY, vectors[:3], k=1)
        engine.search(KEY, vectors[:3], k=1, hnsw_ef=40)
    assert [row[0].record_id for row in hits] == [r.record_id for r in records[:3]]
    assert used == [base.scaled_ef(128, 1_000), 40] and used[0] == 256


_COUNT_SEARCH_THREADS = """
import os, sys
from pathlib import Path
import numpy as np
from chroma.index import IndexConfig, open_query_engine
threads = None if sys.argv[2] == "default" else int(sys.argv[2])
config = IndexConfig(backend="edge", path=Path(sys.argv[1]), edge_search_threads=threads)

def pool_threads():
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            names.append(Path(f"/proc/self/task/{task}/comm").read_text().strip())
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return sum(name.startswith("edge-search") for name in names)

# The most seen over a few searches: now and then (1 in 30 runs) a count right after
# the first search found no pool thread named yet.
with open_query_engine(config) as engine:
    seen = 0
    for _ in range(20):
        engine.search(sys.argv[3], np.ones((1, 8), np.float32), 3)
        seen = max(seen, pool_threads())
    print(seen)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
@pytest.mark.parametrize("threads", [3, None])
def test_an_opened_shard_searches_with_the_configured_number_of_threads(
    tmp_path: Path, threads: int | None,
) -> None:
    """The search pool of an opened version has ``edge_search_threads`` threads, half
    the usable CPUs (at least one) by default (Edge's own default was 8 on a 2-core
    machine, and a single search woke them all)."""
    records = make_records(50, seed=3)
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as engine:
        engine.reindex(KEY, 8, "cosine", [(records, gaussian_mixture(50, 8, seed=3))])
    counted = subprocess.run(
        [sys.executable, "-c", _COUNT_SEARCH_THREADS, str(tmp_path),
         "default" if threads is None else str(threads), KEY],
        capture_output=True, text=True, check=True).stdout.strip()
    assert int(counted) == (threads or max(1, len(os.sched_getaffinity(0)) // 2))
