"""Behaviour every backend must share: deletes, payload updates, errors, versions, restarts.

Each test runs once per backend (``backend`` fixture in ``conftest.py``).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import EngineFactory
from index_data import exact_distances, gaussian_mixture, make_records

from chroma.errors import Conflict, InvalidInput, NotFound
from chroma.index import IndexedRecord, QueryEngine, SearchFilter

pytestmark = pytest.mark.integration

DIMENSION = 16
KEY = "behaviour"


def filled(engine: QueryEngine, n: int = 300, seed: int = 1) -> tuple[list, np.ndarray]:
    records = make_records(n, seed=seed)
    vectors = gaussian_mixture(n, DIMENSION, seed=seed)
    engine.ensure_collection(KEY, DIMENSION)
    engine.upsert(KEY, records, vectors)
    return records, vectors


def test_deleted_records_are_never_returned(engine: QueryEngine) -> None:
    records, vectors = filled(engine)
    doomed = records[::3]
    engine.delete(KEY, [(r.dataset, r.record_id) for r in doomed])
    doomed_ids = {r.record_id for r in doomed}

    assert engine.count(KEY) == len(records) - len(doomed)
    # Query with every deleted vector itself, asking for everything that is left.
    hits = engine.search(KEY, vectors[::3], k=len(records))
    for neighbours in hits:
        assert len(neighbours) == len(records) - len(doomed)
        assert not doomed_ids & {n.record_id for n in neighbours}
    with pytest.raises(NotFound):
        engine.get_vector(KEY, (doomed[0].dataset, doomed[0].record_id))
    engine.delete(KEY, [(doomed[0].dataset, doomed[0].record_id)])  # absent: ignored


def test_deletes_survive_optimize(engine: QueryEngine) -> None:
    records, vectors = filled(engine)
    engine.delete(KEY, [(records[0].dataset, records[0].record_id)])
    engine.optimize(KEY)
    assert records[0].record_id not in {n.record_id for n in engine.search(KEY, vectors[0], 5)[0]}


def test_upsert_is_idempotent_and_overwrites(engine: QueryEngine) -> None:
    records, vectors = filled(engine)
    engine.upsert(KEY, records, vectors)
    assert engine.count(KEY) == len(records)

    moved = vectors[5] * -1.0  # same record, new embedding and payload
    renamed = IndexedRecord(**{**records[5].payload(), "tags": ("moved",)})  # type: ignore[arg-type]
    engine.upsert(KEY, [renamed], moved[np.newaxis, :])
    nearest = engine.search(KEY, moved, 1)[0][0]
    assert (nearest.record_id, nearest.payload["tags"]) == (records[5].record_id, ["moved"])
    assert engine.count(KEY) == len(records)


def test_tag_changes_are_visible_to_filters(engine: QueryEngine) -> None:
    records, vectors = filled(engine)
    chosen = records[10:20]
    refs = [(r.dataset, r.record_id) for r in chosen]
    engine.set_payload(KEY, refs, {"tags": ["to-label"]})

    only_new_tag = SearchFilter(tags_any=("to-label",))
    assert engine.count(KEY, only_new_tag) == len(chosen)
    hits = engine.search(KEY, vectors[0], k=50, filter=only_new_tag)[0]
    assert {h.record_id for h in hits} == {r.record_id for r in chosen}
    # The old tags were replaced, so those records left their old tag's filter.
    for record in chosen:
        for old_tag in record.tags:
            tagged = engine.search(KEY, vectors[0], k=300, filter=SearchFilter(tags_any=(old_tag,)))
            assert record.record_id not in {h.record_id for h in tagged[0]}

    engine.set_payload(KEY, refs[:2], {"label_class": "zebra"})
    assert engine.count(KEY, SearchFilter(label_classes=("zebra",))) == 2


def test_set_payload_guards_identity_and_missing_records(engine: QueryEngine) -> None:
    records, _ = filled(engine)
    with pytest.raises(InvalidInput, match="dataset"):
        engine.set_payload(KEY, [(records[0].dataset, records[0].record_id)], {"dataset": "x"})
    with pytest.raises(InvalidInput, match="tags"):
        engine.set_payload(KEY, [(records[0].dataset, records[0].record_id)], {"tags": "a"})
    engine.set_payload(KEY, [("nowhere", "missing")], {"tags": ["x"]})
    assert engine.count(KEY) == len(records)  # no payload-only point appeared


def test_errors_are_chroma_errors(engine: QueryEngine) -> None:
    with pytest.raises(NotFound):
        engine.search("missing", np.zeros(DIMENSION, np.float32), 3)
    with pytest.raises(NotFound):
        engine.collection_info("missing")
    records, vectors = filled(engine)
    with pytest.raises(Conflict, match="dimension 16"):
        engine.ensure_collection(KEY, DIMENSION + 1)
    with pytest.raises(Conflict):
        engine.ensure_collection(KEY, DIMENSION, "euclid")
    with pytest.raises(InvalidInput, match="dimension 15"):
        engine.search(KEY, np.zeros(DIMENSION - 1, np.float32), 3)
    with pytest.raises(InvalidInput, match="NaN"):
        engine.upsert(KEY, records[:1], np.full((1, DIMENSION), np.nan, np.float32))
    with pytest.raises(InvalidInput):
        engine.upsert(KEY, records[:2], vectors[:1])
    with pytest.raises(InvalidInput, match="k must"):
        engine.search(KEY, vectors[0], 0)
    with pytest.raises(InvalidInput, match="key"):
        engine.ensure_collection("../escape", DIMENSION)
    assert engine.ensure_collection(KEY, DIMENSION).points == len(records)  # idempotent


def test_reindex_under_continuous_queries_never_fails_or_shows_a_partial_index(
    engine: QueryEngine,
) -> None:
    """A thread searches and counts in a loop while a full re-index builds and switches.

    Version 1 holds N records; version 2 holds the same N (new input_uri) plus M more.
    Every answer must come whole from one version: count N or N+M, the exact top-k of
    that version, and one generation of input_uri per result set.
    """
    n, extra, k = 1500, 500, 10
    old_records = make_records(n, seed=21, uri_prefix="gen1://")
    new_records = make_records(n + extra, seed=21, uri_prefix="gen2://")
    vectors = gaussian_mixture(n + extra, DIMENSION, seed=22)
    engine.ensure_collection(KEY, DIMENSION)
    engine.upsert(KEY, old_records, vectors[:n])
    engine.optimize(KEY)

    query = vectors[3] + 0.01
    exact_top = {
        size: set(np.argsort(exact_distances("cosine", vectors[:size], query))[:k].tolist())
        for size in (n, n + extra)
    }
    answers: list[tuple[int, str, set[int]]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def query_loop() -> None:
        while not stop.is_set():
            try:
                counted = engine.count(KEY)
                hits = engine.search(KEY, query, k)[0]
                generations = {h.input_uri.split("://")[0] for h in hits if h.input_uri}
                assert len(generations) == 1, generations
                answers.append((counted, generations.pop(), {int(h.record_id[4:]) for h in hits}))
            except BaseException as exc:  # record everything; the main thread asserts
                failures.append(exc)

    worker = threading.Thread(target=query_loop)
    worker.start()
    try:
        time.sleep(0.2)
        batches = [
            (new_records[i : i + 400], vectors[i : i + 400]) for i in range(0, n + extra, 400)
        ]
        info = engine.reindex(KEY, DIMENSION, "cosine", batches)
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join(timeout=30)

    assert not failures, failures[:3]
    assert info.version == 2 and info.points == n + extra
    assert {count for count, _, _ in answers} <= {n, n + extra}
    for _, generation, top in answers:
        # Each result set is the exact top-k of the complete version it came from.
        assert top == exact_top[n if generation == "gen1" else n + extra]
    generations_seen = [generation for _, generation, _ in answers]
    assert generations_seen[0] == "gen1" and generations_seen[-1] == "gen2"
    assert len(answers) > 20, "the query loop barely ran"
    # After the switch, only version 2 answers; version 1 can then be dropped.
    assert engine.collection_info(KEY).version == 2
    assert engine.drop_old_versions(KEY) == [1]
    assert engine.count(KEY) == n + extra


def test_drop_collection_removes_every_version(engine: QueryEngine) -> None:
    records, vectors = filled(engine)
    engine.reindex(KEY, DIMENSION, "cosine", [(records, vectors)])
    engine.drop_collection(KEY)
    with pytest.raises(NotFound):
        engine.count(KEY)
    engine.drop_collection(KEY)  # absent: no-op
    assert engine.ensure_collection(KEY, DIMENSION).points == 0


def test_index_persists_across_close_and_reopen(engine_factory: EngineFactory) -> None:
    first = engine_factory()
    records, vectors = filled(first)
    first.reindex(KEY, DIMENSION, "cosine", [(records, vectors)])
    first.delete(KEY, [(records[0].dataset, records[0].record_id)])
    first.set_payload(KEY, [(records[1].dataset, records[1].record_id)], {"tags": ["kept"]})
    before = first.search(KEY, vectors[:5], 7)
    first.close()

    second = engine_factory()
    info = second.collection_info(KEY)
    assert (info.version, info.points, info.dimension) == (2, len(records) - 1, DIMENSION)
    after = second.search(KEY, vectors[:5], 7)
    assert [[h.record_id for h in hits] for hits in after] == [
        [h.record_id for h in hits] for hits in before
    ]
    np.testing.assert_allclose(
        [[h.distance for h in hits] for hits in after],
        [[h.distance for h in hits] for hits in before],
        atol=1e-5,
    )
    assert [[h.payload for h in hits] for hits in after] == [
        [h.payload for h in hits] for hits in before
    ]
    assert second.count(KEY, SearchFilter(tags_any=("kept",))) == 1
    with pytest.raises(NotFound):
        second.get_vector(KEY, (records[0].dataset, records[0].record_id))
