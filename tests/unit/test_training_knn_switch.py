"""The recommender's one kNN switch: exact below ``recommend_approximate_knn_min``
training records, the inverted file from there on, answering in the same shapes."""

from __future__ import annotations

import numpy as np
import pytest

from chroma.labelling.neighbours import knn_inputs
from chroma.labelling.training import TrainingNeighbours, TrainingSet, exact_training_source
from chroma.scoring import ExactNearest, IvfNearest
from chroma.settings import Settings


def training_set(n: int, seed: int = 0) -> TrainingSet:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, 16)) * 4
    labels = rng.integers(0, 8, n)
    vectors = (centres[labels] + rng.normal(size=(n, 16)) * 0.3).astype(np.float32)
    return TrainingSet([("t", f"r{i}") for i in range(n)], [f"c{c}" for c in labels],
                       [None] * n, vectors, distance="cosine")


def test_below_the_setting_the_search_is_exact_and_from_it_approximate():
    training = training_set(400)
    below = TrainingNeighbours(training, approximate_min=401)
    at = TrainingNeighbours(training, approximate_min=400)
    off = TrainingNeighbours(training, approximate_min=0)
    assert isinstance(below.rows, ExactNearest) and not below.approximate
    assert isinstance(at.rows, IvfNearest) and at.approximate
    assert isinstance(off.rows, ExactNearest)


def test_the_callers_settings_decide_not_the_environment(monkeypatch):
    monkeypatch.setenv("CHROMA_RECOMMEND_APPROXIMATE_KNN_MIN", "301")
    training = training_set(300)
    at = exact_training_source(300, Settings(recommend_approximate_knn_min=300),
                               lambda: training)
    assert at is not None and at.approximate
    monkeypatch.setenv("CHROMA_RECOMMEND_APPROXIMATE_KNN_MIN", "300")
    above = exact_training_source(300, Settings(recommend_approximate_knn_min=301),
                                  lambda: training)
    assert above is not None and not above.approximate
    assert exact_training_source(300, Settings(recommend_exact_knn_max=299),
                                 lambda: training) is None  # the query engine's
    assert training.neighbours(301) is above  # built once per set and switch


@pytest.mark.parametrize("excluded", [False, True])
def test_the_approximate_answer_has_the_exact_ones_shape_and_neighbours(excluded):
    training = training_set(2_000)
    exact = TrainingNeighbours(training, approximate_min=0)
    approximate = TrainingNeighbours(training, approximate_min=1)
    queries = training.vectors[:200] + 0.01
    own = training.refs[:200] if excluded else None
    mine = knn_inputs(approximate, "k", queries, 10, own)
    truth = knn_inputs(exact, "k", queries, 10, own)
    assert mine is not None and truth is not None
    assert mine.distances.shape == truth.distances.shape == (200, 10)
    assert not np.isnan(mine.distances).any()
    found = np.mean([len(set(a) & set(b)) / 10
                     for a, b in zip(mine.refs, truth.refs, strict=True)])
    assert found >= 0.95
    if own is not None:
        assert all(own[row] not in refs for row, refs in enumerate(mine.refs))
    labels_of = dict(zip(training.refs, training.labels, strict=True))
    assert all(labels == [labels_of[r] for r in refs]
               for labels, refs in zip(mine.labels, mine.refs, strict=True))


def test_a_kept_set_forgets_its_exact_search_and_keeps_an_inverted_file() -> None:
    """Between runs the recommender keeps the training set; its exact search (a normalised
    copy of every vector) goes, and the next run's rebuilt one answers the same."""
    training = training_set(400)
    queries = training.vectors[:5] + 0.01
    exact = training.neighbours(401)
    before = exact.rows.nearest(queries, 10)
    training.forget_exact_search()
    rebuilt = training.neighbours(401)
    assert rebuilt is not exact
    after = rebuilt.rows.nearest(queries, 10)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    ivf = training.neighbours(400)
    training.forget_exact_search()
    assert training.neighbours(400) is ivf
