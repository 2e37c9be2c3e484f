"""The recommender's in-memory kNN answers like the query engine (Qdrant Edge, exact on
small data): the same training neighbours, the same distances, for every metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chroma.index import IndexConfig, IndexedRecord, SearchFilter, open_query_engine
from chroma.labelling.training import TrainingNeighbours, TrainingSet

pytestmark = pytest.mark.integration

DIM = 12


@pytest.mark.parametrize("distance", ["cosine", "dot", "euclid"])
def test_training_neighbours_match_the_engine(tmp_path: Path, distance: str) -> None:
    rng = np.random.default_rng(3)
    training = rng.normal(size=(300, DIM)).astype(np.float32)
    production = rng.normal(size=(200, DIM)).astype(np.float32)
    records = ([IndexedRecord("train", f"t{i}", "training", label_class=f"c{i % 3}")
                for i in range(300)]
               + [IndexedRecord("prod", f"p{i}", "production") for i in range(200)])
    engine = open_query_engine(IndexConfig(backend="edge", path=tmp_path / "index",
                                           hnsw_ef_search=512))
    engine.reindex("k", DIM, distance, [(records, np.vstack([training, production]))])

    stored = training / np.linalg.norm(training, axis=1, keepdims=True) if (
        distance == "cosine") else training
    exact = TrainingNeighbours(TrainingSet(
        [("train", f"t{i}") for i in range(300)], [f"c{i % 3}" for i in range(300)],
        [None] * 300, stored, distance=distance), approximate_min=0)
    queries = rng.normal(size=(25, DIM)).astype(np.float32)
    ours = exact.search("k", queries, 7)
    theirs = engine.search("k", queries, 7, SearchFilter(split="training"))
    for mine, engines in zip(ours, theirs, strict=True):
        assert [n.record_id for n in mine] == [n.record_id for n in engines]
        assert [n.distance for n in mine] == pytest.approx(
            [n.distance for n in engines], abs=1e-4)
        assert [n.payload["label_class"] for n in mine] == [
            n.payload["label_class"] for n in engines]
    engine.close()


def test_fewer_training_records_than_k() -> None:
    exact = TrainingNeighbours(TrainingSet(
        [("t", "a"), ("t", "b"), ("t", "c")], ["x", "y", None], [None, None, "z"],
        np.eye(3, dtype=np.float32), distance="cosine"), approximate_min=0)
    hits = exact.search("k", np.array([[1.0, 0.1, 0.0]], dtype=np.float32), 10)
    assert [n.record_id for n in hits[0]] == ["a", "b", "c"]
    assert hits[0][0].distance < hits[0][1].distance


@pytest.mark.parametrize("distance", ["cosine", "dot", "euclid"])
def test_the_array_path_answers_like_the_search_path(distance: str) -> None:
    """``knn_inputs`` takes ``knn_answer`` from a training source; through ``search`` (what
    it does for the index) the answer must be the same, self-exclusion included."""
    from chroma.labelling.neighbours import knn_inputs

    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(120, DIM)).astype(np.float32)
    exact = TrainingNeighbours(TrainingSet(
        [("t", f"r{i}") for i in range(120)],
        [f"c{i % 4}" if i % 5 else None for i in range(120)],
        [f"p{i % 3}" for i in range(120)], vectors, distance=distance), approximate_min=0)

    class SearchOnly:  # what the index offers: search, nothing else
        def search(self, key: str, queries: np.ndarray, k: int = 10,
                   filter: object = None) -> list[list[object]]:
            return exact.search(key, queries, k, filter)

    queries = vectors[:30] + rng.normal(size=(30, DIM)).astype(np.float32) * 0.01
    exclude = [("t", f"r{i}") for i in range(30)]
    for own in (None, exclude):
        direct = knn_inputs(exact, "k", queries, 5, own)
        searched = knn_inputs(SearchOnly(), "k", queries, 5, own)
        assert direct is not None and searched is not None
        assert direct.refs == searched.refs and direct.labels == searched.labels
        np.testing.assert_allclose(direct.distances, searched.distances, atol=1e-6)
    assert all(("t", f"r{i}") not in direct.refs[i] for i in range(30))
