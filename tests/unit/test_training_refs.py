"""The training refs kept as columns (dataset codes + an Arrow string array) give back
exactly the (dataset, record id) tuples they were made from, in every access path the
recommender uses."""

from __future__ import annotations

import numpy as np

from chroma.labelling.training import TrainingNeighbours, TrainingRefs, TrainingSet


def _refs(n: int) -> list[tuple[str, str]]:
    datasets = ["train", "ünïcode-set", "", "other"]  # an empty name is still a dataset
    return [(datasets[i % 4] if i % 7 else datasets[(i // 7) % 4], f"r{i}-é" * (i % 3))
            for i in range(n)]


def test_every_access_gives_back_the_tuples_it_was_made_from():
    plain = _refs(500)
    refs = TrainingRefs(plain)
    assert len(refs) == 500
    assert list(refs) == plain
    assert [refs[i] for i in range(500)] == plain
    assert refs[-1] == plain[-1] and refs[np.int64(3)] == plain[3]
    assert refs[10:20] == plain[10:20] and refs[::-50] == plain[::-50]
    rows = np.array([[499, 0, 0], [7, 14, 21]])
    assert refs.take_rows(rows) == [[plain[i] for i in row] for row in rows.tolist()]
    assert refs.take_rows(np.zeros((2, 0), dtype=np.int64)) == [[], []]
    assert plain[42] in refs and ("nowhere", "r1") not in refs


def test_knn_answers_name_the_same_records_as_plain_tuples_would():
    rng = np.random.default_rng(1)
    n = 300
    plain = _refs(n)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    training = TrainingSet(plain, [f"c{i % 5}" for i in range(n)], [None] * n, vectors)
    search = TrainingNeighbours(training, approximate_min=0)
    queries = vectors[:50] + 0.001
    rows, _ = search.rows.nearest(queries, 4)
    answer = search.knn_answer(queries, 4)
    assert answer.refs == [[plain[i] for i in row] for row in rows.tolist()]
    # Excluding itself: the exact path must drop exactly the own record (row r is
    # nearest to itself), never a record of another dataset that shares its id.
    excluded = search.knn_answer(queries, 3, exclude=plain[:50])
    assert excluded.refs == [[plain[i] for i in row if plain[i] != plain[r]][:3]
                             for r, row in enumerate(rows.tolist())]
    assert all(plain[r] not in found for r, found in enumerate(excluded.refs))
