"""Congruence: Qdrant Edge and the remote backend answer the same, and both equal brute force.

Same records, same random filters, same queries on both backends; neighbours and
distances are compared to each other and to an exact numpy search over the records the
filter admits (small data, so Edge scans exactly and no HNSW approximation is involved).
The remote backend runs on the server ``conftest.remote_server`` picks (a real one at
``CHROMA_TEST_QDRANT_URL``, else qdrant-client in memory), also through two server faults
(``qdrant_faults``): a restart in the middle of a build, and concurrent creators.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import RemoteServer
from index_data import CLASSES, DATASETS, TAGS, exact_distances, gaussian_mixture, make_records
from qdrant_faults import ConcurrentStart, RestartMidBuild

from chroma.index import (
    IndexConfig,
    IndexedRecord,
    Neighbour,
    QueryEngine,
    SearchFilter,
    open_query_engine,
)

pytestmark = pytest.mark.integration

N_RECORDS = 800
DIMENSION = 16
N_FILTERS = 40
TIE_TOLERANCE = 1e-4


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[QueryEngine]:
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path / "edge")) as opened:
        yield opened


@pytest.fixture
def engines(edge: QueryEngine, qdrant_server: RemoteServer) -> dict[str, QueryEngine]:
    return {"edge": edge, "remote": qdrant_server.open()}


def random_filter(rng: np.random.Generator, records: list[IndexedRecord]) -> SearchFilter:
    """A filter with each constraint present by chance; values drawn from the data's own."""
    classes = [c for c in CLASSES if c is not None]
    fields: dict[str, object] = {}
    if rng.random() < 0.4:
        fields["datasets"] = tuple(rng.choice(DATASETS, size=rng.integers(1, 3), replace=False))
    if rng.random() < 0.3:
        fields["split"] = str(rng.choice(["training", "production"]))
    if rng.random() < 0.3:
        fields["inference_classes"] = tuple(rng.choice(classes, size=rng.integers(1, 3)))
    if rng.random() < 0.2:
        fields["label_classes"] = tuple(rng.choice(classes, size=1))
    if rng.random() < 0.3:
        fields["tags_any"] = tuple(rng.choice(TAGS, size=rng.integers(1, 3), replace=False))
    if rng.random() < 0.3:
        start = 1_700_000_000.0 + float(rng.integers(0, 800_000))
        fields["logged_from"] = start
        fields["logged_until"] = start + float(rng.integers(50_000, 400_000))
    if rng.random() < 0.2:
        picked = rng.choice(len(records), size=5, replace=False)
        fields["exclude"] = tuple((records[i].dataset, records[i].record_id) for i in picked)
    return SearchFilter(**fields)  # type: ignore[arg-type]


def admits(search_filter: SearchFilter, record: IndexedRecord) -> bool:
    """The filter's meaning, written independently of both backends."""
    f = search_filter
    return (
        (not f.datasets or record.dataset in f.datasets)
        and (f.split is None or record.split == f.split)
        and (not f.inference_classes or record.inference_class in f.inference_classes)
        and (not f.label_classes or record.label_class in f.label_classes)
        and (not f.tags_any or bool(set(record.tags) & set(f.tags_any)))
        and (f.logged_from is None or record.logged_at >= f.logged_from)
        and (f.logged_until is None or record.logged_at < f.logged_until)
        and (record.dataset, record.record_id) not in f.exclude
    )


def brute_force(
    distance: str,
    records: list[IndexedRecord],
    vectors: np.ndarray,
    query: np.ndarray,
    k: int,
    search_filter: SearchFilter,
) -> tuple[list[str], np.ndarray]:
    """Exact top-k record ids and all admitted distances, sorted."""
    admitted = np.array([admits(search_filter, r) for r in records])
    distances = exact_distances(distance, vectors, query)
    distances[~admitted] = np.inf
    order = np.argsort(distances, kind="stable")[: min(k, int(admitted.sum()))]
    return [records[i].record_id for i in order], np.sort(distances[admitted])


def assert_matches_truth(
    hits: list[Neighbour], truth_ids: list[str], truth_distances: np.ndarray, label: str
) -> None:
    k = len(truth_ids)
    assert len(hits) == k, f"{label}: {len(hits)} hits, exact search has {k}"
    got = np.array([hit.distance for hit in hits])
    np.testing.assert_allclose(
        got, truth_distances[:k], rtol=1e-4, atol=TIE_TOLERANCE, err_msg=label
    )
    assert all(np.diff(got) >= -TIE_TOLERANCE), f"{label}: not sorted nearest first"
    # Ids must agree except where the k-th and (k+1)-th exact distances tie.
    boundary_tie = (
        len(truth_distances) > k and truth_distances[k] - truth_distances[k - 1] < TIE_TOLERANCE
    )
    if not boundary_tie:
        assert {hit.record_id for hit in hits} == set(truth_ids), label


def assert_agree_under_random_filters(
    engines: dict[str, QueryEngine],
    key: str,
    records: list[IndexedRecord],
    vectors: np.ndarray,
    distance: str,
    n_filters: int = N_FILTERS,
) -> None:
    """Every engine answers each random filter as brute force does, and as the others do."""
    rng = np.random.default_rng(2024)
    dimension = vectors.shape[1]
    queries = gaussian_mixture(n_filters * 2, dimension, seed=11, clusters=12) + rng.normal(
        scale=0.05, size=(n_filters * 2, dimension)
    ).astype(np.float32)
    checked_hits = 0
    for index in range(n_filters):
        search_filter = random_filter(rng, records)
        k = int(rng.choice([1, 5, 10, 25]))
        batch = queries[2 * index : 2 * index + 2]
        expected_count = sum(admits(search_filter, r) for r in records)
        answers = {name: e.search(key, batch, k, search_filter) for name, e in engines.items()}
        for name, engine in engines.items():
            assert engine.count(key, search_filter) == expected_count, (name, search_filter)
        for row, query in enumerate(batch):
            truth_ids, truth_distances = brute_force(
                distance, records, vectors, query, k, search_filter
            )
            for name, answer in answers.items():
                label = f"{name} {distance} k={k} {search_filter}"
                assert_matches_truth(answer[row], truth_ids, truth_distances, label)
                checked_hits += len(answer[row])
            first, *others = answers.values()
            for other in others:
                assert [h.dataset for h in first[row]] == [h.dataset for h in other[row]]
                assert [h.payload for h in first[row]] == [h.payload for h in other[row]]
    assert checked_hits > n_filters * 5  # the filters did not all come out empty


@pytest.mark.parametrize("distance", ["cosine", "dot", "euclid"])
def test_backends_agree_with_brute_force_under_random_filters(
    engines: dict[str, QueryEngine], distance: str
) -> None:
    records = make_records(N_RECORDS, seed=7)
    vectors = gaussian_mixture(N_RECORDS, DIMENSION, seed=11, clusters=12)
    key = f"congruence-{distance}"
    for engine in engines.values():
        engine.ensure_collection(key, DIMENSION, distance)  # type: ignore[arg-type]
        for start in range(0, N_RECORDS, 300):  # several upserts, as the indexer does
            engine.upsert(key, records[start : start + 300], vectors[start : start + 300])
    assert_agree_under_random_filters(engines, key, records, vectors, distance)


RESTART_DEADLINE_S = 30.0


def test_a_server_restart_mid_build_neither_hangs_nor_changes_answers(
    edge: QueryEngine, qdrant_server: RemoteServer
) -> None:
    """The server restarts between two batches of a re-index: the new collection comes
    back grey (optimizations pending, not triggered). The build must trigger them and
    finish (before the fix it waited ``timeout_s * 120``, an hour by default), and then
    answer as Edge does."""
    faulty = RestartMidBuild(qdrant_server.connect(), lock=qdrant_server.lock, shared=True)
    remote = qdrant_server.open(wrap=lambda *_, **__: faulty)
    records = make_records(N_RECORDS, seed=7)
    vectors = gaussian_mixture(N_RECORDS, DIMENSION, seed=11, clusters=12)
    key = "congruence-restart"
    edge.reindex(key, DIMENSION, "euclid", [(records, vectors)])

    def batches() -> Iterator[tuple[list[IndexedRecord], np.ndarray]]:
        for start in range(0, N_RECORDS, 200):
            if start == 400:
                faulty.restart()
            yield records[start : start + 200], vectors[start : start + 200]

    outcome: list[object] = []
    build = threading.Thread(
        target=lambda: outcome.append(remote.reindex(key, DIMENSION, "euclid", batches())),
        daemon=True,
    )
    started = time.monotonic()
    build.start()
    build.join(RESTART_DEADLINE_S)
    assert outcome, f"re-index still waiting on a grey collection after {RESTART_DEADLINE_S} s"
    assert faulty.triggers >= 1  # it woke the optimizers rather than waiting them out
    assert time.monotonic() - started < RESTART_DEADLINE_S
    remote.optimize(key)  # green now: returns at once
    assert remote.collection_info(key).points == N_RECORDS
    engines = {"edge": edge, "remote": remote}
    assert_agree_under_random_filters(engines, key, records, vectors, "euclid", n_filters=15)


CREATORS = 4


def versions_on_server(server: RemoteServer, engine: QueryEngine, key: str) -> list[int]:
    """Version numbers of every collection of ``key`` on the server, aliased or not."""
    prefix = f"{server.config.collection_prefix}{key}__v"
    names = [c.name for c in server.connect().get_collections().collections]
    return sorted(int(name[len(prefix) :]) for name in names if name.startswith(prefix))


def test_concurrent_creators_of_a_new_collection_all_succeed_on_one_collection(
    edge: QueryEngine, qdrant_server: RemoteServer
) -> None:
    """Four processes ``ensure_collection`` the same new key at once (each has seen no
    alias and the same versions before any creates). Before the fix three of them failed,
    the server's 409 reported as 503; now all succeed on the same collection, and it
    answers as Edge does."""
    barrier = threading.Barrier(CREATORS, timeout=20)
    creators = [
        qdrant_server.open(wrap=functools.partial(ConcurrentStart, barrier=barrier))
        for _ in range(CREATORS)
    ]
    key = "congruence-concurrent"
    results: dict[int, object] = {}

    def create(index: int) -> None:
        try:
            results[index] = creators[index].ensure_collection(key, DIMENSION)
        except Exception as exc:  # reported below, per creator
            results[index] = exc

    threads = [threading.Thread(target=create, args=(i,)) for i in range(CREATORS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    failures = {i: r for i, r in results.items() if isinstance(r, Exception)}
    assert not failures, failures
    assert len({(r.version, r.dimension) for r in results.values()}) == 1  # type: ignore[attr-defined]
    assert versions_on_server(qdrant_server, creators[0], key) == [results[0].version]  # type: ignore[attr-defined]

    records = make_records(300, seed=3)
    vectors = gaussian_mixture(300, DIMENSION, seed=5)
    creators[1].upsert(key, records, vectors)
    edge.ensure_collection(key, DIMENSION)
    edge.upsert(key, records, vectors)
    engines = {"edge": edge, **{f"creator-{i}": c for i, c in enumerate(creators)}}
    assert_agree_under_random_filters(engines, key, records, vectors, "cosine", n_filters=10)


def test_neighbour_fields_and_query_by_record_agree(engines: dict[str, QueryEngine]) -> None:
    records = make_records(200, seed=3)
    vectors = gaussian_mixture(200, DIMENSION, seed=5)
    key = "congruence-fields"
    for engine in engines.values():
        engine.ensure_collection(key, DIMENSION)
        engine.upsert(key, records, vectors)

    probe = records[17]
    found = {
        name: e.get_vector(key, (probe.dataset, probe.record_id)) for name, e in engines.items()
    }
    expected = vectors[17] / np.linalg.norm(vectors[17])  # cosine: stored normalised
    for vector in found.values():
        np.testing.assert_allclose(vector, expected, rtol=1e-5, atol=1e-6)

    not_self = SearchFilter(exclude=((probe.dataset, probe.record_id),))
    answers = {name: e.search(key, found[name], 5, not_self)[0] for name, e in engines.items()}
    for name, hits in answers.items():
        assert probe.record_id not in {h.record_id for h in hits}, name
        first = hits[0]
        record = next(r for r in records if r.record_id == first.record_id)
        assert (first.dataset, first.split, first.input_uri) == (
            record.dataset,
            record.split,
            record.input_uri,
        )
        assert first.payload["tags"] == list(record.tags)
        assert first.payload["logged_at"] == record.logged_at
    assert [h.record_id for h in answers["edge"]] == [h.record_id for h in answers["remote"]]
