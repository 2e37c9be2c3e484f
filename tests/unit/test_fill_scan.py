"""``chroma.index.filling``: the exact scan over a first fill's points read so far."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from chroma.index.base import IndexedRecord, Neighbour, SearchFilter
from chroma.index.filling import FillScan, matches, merge_hits
from chroma.keys import point_id


def _records(n: int) -> list[IndexedRecord]:
    return [IndexedRecord("prod" if i % 2 else "train", f"r{i}",
                          "production" if i % 2 else "training",
                          inference_class=("cat", "dog", None)[i % 3],
                          tags=("night",) if i % 5 < 2 else (),
                          logged_at=1_000.0 + i) for i in range(n)]


@pytest.mark.parametrize("distance", ["cosine", "dot", "euclid"])
def test_the_scan_answers_the_exact_nearest_in_the_engine_s_distances(distance: str) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(500, 8)).astype(np.float32)
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    records = _records(500)
    scan = FillScan(8, distance)  # type: ignore[arg-type]
    scan.add(records[:200], vectors[:200])
    scan.add(records[200:], vectors[200:])
    if distance == "cosine":
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        expected = 1 - (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    elif distance == "dot":
        expected = -(queries @ vectors.T)
    else:
        expected = np.linalg.norm(queries[:, None, :] - vectors[None, :, :], axis=2)
    for hits, row in zip(scan.search(queries, 7, None), expected, strict=True):
        assert [h.record_id for h in hits] == [f"r{i}" for i in np.argsort(row)[:7]]
        assert [h.distance for h in hits] == pytest.approx(np.sort(row)[:7], abs=1e-4)


def test_filters_deletes_and_a_record_logged_again() -> None:
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    records = _records(300)
    scan = FillScan(8, "cosine")
    scan.add(records, vectors)
    only = SearchFilter(split="production", inference_classes=("cat",), tags_any=("night",),
                        exclude=(("prod", "r15"),))
    hits = scan.search(vectors[:1], 300, only)[0]
    expected = {r.record_id for r in records if matches(only, r)}
    assert {h.record_id for h in hits} == expected
    assert len(expected) > 5 and "r15" not in expected and "r45" in expected
    assert all(h.split == "production" and h.payload["inference_class"] == "cat" for h in hits)
    scan.forget([point_id("train", "r0")])
    assert "r0" not in {h.record_id for h in scan.search(vectors[:1], 5, None)[0]}
    again = IndexedRecord("prod", "r1", "production", inference_class="fox", logged_at=9.0)
    scan.add([again], -vectors[1:2])  # logged again with another vector: only that counts
    hits = scan.search(vectors[1:2], 300, None)[0]
    assert [h.payload["inference_class"] for h in hits if h.record_id == "r1"] == ["fox"]


def test_matches_follows_each_filter_field() -> None:
    record = IndexedRecord("d", "r", "training", inference_class="cat", label_class="dog",
                           tags=("a", "b"), logged_at=10.0)
    assert matches(None, record) and matches(SearchFilter(), record)
    for passing, failing in [
        (SearchFilter(datasets=("d", "e")), SearchFilter(datasets=("e",))),
        (SearchFilter(split="training"), SearchFilter(split="production")),
        (SearchFilter(inference_classes=("cat",)), SearchFilter(inference_classes=("dog",))),
        (SearchFilter(label_classes=("dog",)), SearchFilter(label_classes=("cat",))),
        (SearchFilter(tags_any=("b", "z")), SearchFilter(tags_any=("z",))),
        (SearchFilter(logged_from=10.0, logged_until=11.0),
         SearchFilter(logged_from=5.0, logged_until=10.0)),
        (SearchFilter(exclude=(("d", "x"),)), SearchFilter(exclude=(("d", "r"),))),
    ]:
        assert matches(passing, record) and not matches(failing, record), failing


def test_a_scan_holds_at_most_its_limit() -> None:
    scan = FillScan(4, "dot", limit=10)
    scan.add(_records(8), np.ones((8, 4), dtype=np.float32))
    scan.add(_records(20)[8:], np.ones((12, 4), dtype=np.float32))
    assert len(scan) == 10


def test_merge_keeps_each_record_once_nearest_first() -> None:
    def hit(record_id: str, distance: float) -> Neighbour:
        return Neighbour(record_id, "d", "training", distance, None)

    merged = merge_hits([[hit("a", 0.1), hit("b", 0.5)]], [[hit("b", 0.4), hit("c", 0.2)]], 3)
    assert [(h.record_id, h.distance) for h in merged[0]] == [("a", 0.1), ("c", 0.2),
                                                               ("b", 0.4)]


def _live_indexed_records() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is IndexedRecord)


def test_the_scan_keeps_no_record_objects_of_its_own() -> None:
    """100k ``IndexedRecord`` objects alive for a whole fill fragmented the worker's
    pymalloc arenas: the scan holds columns, and rebuilds a record only for a search."""
    before = _live_indexed_records()
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(400, 8)).astype(np.float32)
    scan = FillScan(8, "cosine")
    for start in range(0, 400, 100):
        scan.add(_records(400)[start:start + 100], vectors[start:start + 100])
    assert _live_indexed_records() == before
    hits = scan.search(vectors[250:251], 1, SearchFilter(tags_any=("night",)))[0]
    assert [(h.record_id, h.payload["tags"], h.payload["logged_at"]) for h in hits] == [
        ("r250", ["night"], 1250.0)]
    assert _live_indexed_records() == before
